// The fault suite's summary: one line per injected fault, what was expected and what
// was observed, as a test diagnostic (in the TAP/spec output) and on stderr, so the
// README's test command prints the table the closing note quotes.
import type { TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Env } from "../../src/devenv/env.ts";

export interface FaultSummary {
  fault: string;
  injected: string;
  expected: string;
  observed: string;
}

export function reportFault(t: TestContext, s: FaultSummary): void {
  const line = `FAULT ${s.fault} | injected: ${s.injected} | expected: ${s.expected} | observed: ${s.observed}`;
  t.diagnostic(line);
  process.stderr.write(line + "\n");
}

/** Stop kube-apiserver, leave it down a moment, start it again (same port, same etcd). Returns the time it was away, in ms. */
export async function restartApiserver(env: Env, downMs = 3000): Promise<number> {
  const apiserver = env.controlPlane!.apiserver;
  const t0 = performance.now();
  await apiserver.stop();
  await sleep(downMs);
  await apiserver.start();
  return performance.now() - t0;
}
