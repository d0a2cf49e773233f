// Stopping when asked, in bounded time, whatever is still reachable. The first SIGTERM or
// SIGINT is logged and aborts `signal`: the command stops taking work and winds down,
// each step bounded (a dependency that is gone is not waited for). A second signal
// exits at once; and if winding down overruns `timeoutMs`, the process exits anyway, so
// Kubernetes never has to kill it after its grace period.
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, type Logger } from "../util/index.ts";

/** Below Kubernetes' default 30 s grace period (the chart sets it to match). @default 25_000 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 25_000;

export interface Shutdown {
  /** Aborts on the first signal. */
  signal: AbortSignal;
  /** Resolves with the first signal's name. */
  requested: Promise<NodeJS.Signals>;
}

export function onShutdown(log: Logger, timeoutMs = DEFAULT_SHUTDOWN_TIMEOUT_MS): Shutdown {
  const ac = new AbortController();
  let resolve!: (s: NodeJS.Signals) => void;
  const requested = new Promise<NodeJS.Signals>((r) => (resolve = r));
  let count = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++count > 1) {
      log.warn({ signal: sig }, `received ${sig} again: exiting now`);
      process.exit(130);
    }
    log.info({ signal: sig, timeoutMs }, `received ${sig}: stopping (a second signal exits at once)`);
    const t = setTimeout(() => {
      log.error({ timeoutMs }, `did not stop within ${timeoutMs} ms: exiting`);
      process.exit(1);
    }, timeoutMs);
    t.unref();
    ac.abort(new Error(`received ${sig}`));
    resolve(sig);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return { signal: ac.signal, requested };
}

/** `p`, or after `ms` a logged "gave up waiting" (the step goes on in the background). */
export async function bounded<T>(
  p: Promise<T>,
  ms: number,
  what: string,
  log: Logger,
): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((r) => {
    timer = setTimeout(() => {
      log.warn({ ms }, `${what} did not finish within ${ms} ms; going on without it`);
      r(undefined);
    }, ms);
  });
  try {
    return await Promise.race([
      p.catch((err: unknown) => {
        log.warn({ err: errorMessage(err) }, `${what} failed`);
        return undefined;
      }),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drain NATS when it answers; close it when it does not (never wait for a server that is gone). */
export async function closeNats(nc: NatsConnection, log: Logger, ms = 2_000): Promise<void> {
  if (nc.isClosed()) return;
  const drained = await bounded(
    nc.drain().then(() => true),
    ms,
    "draining NATS",
    log,
  );
  if (!drained && !nc.isClosed()) await bounded(nc.close(), ms, "closing NATS", log);
}

/**
 * After a long-running command has wound down: exit with `code` once what is pending
 * flushes, even if a library left a timer or socket behind (a reconnect loop, a pooled
 * connection) that would keep the process alive.
 */
export function exitSoon(code: number, ms = 500): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), ms).unref();
}
