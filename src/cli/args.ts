// A thin layer over node:util parseArgs: typed options, environment fallbacks for the
// conventional variables (KUBECONFIG, NATS_URL, ...), and a usage error that names
// the bad flag.
import { parseArgs, type ParseArgsConfig } from "node:util";

import { parseDuration, UsageError } from "../util/index.ts";

export { parseDuration };

export type Options = NonNullable<ParseArgsConfig["options"]>;

const HELP = { help: { type: "boolean", short: "h" } } as const;

export function parse<T extends Options>(argv: string[], options: T, allowPositionals = false) {
  try {
    const config = {
      args: argv,
      options: { ...HELP, ...options } as typeof HELP & T,
      allowPositionals,
      strict: true as const,
    };
    return parseArgs(config);
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]!);
  }
}

/** flag value, else environment variable, else default. */
export function flagOrEnv(value: unknown, env: string | undefined, def?: string): string | undefined {
  if (typeof value === "string" && value !== "") return value;
  if (env !== undefined && env !== "") return env;
  return def;
}

export function intFlag(name: string, value: string | undefined, def: number, min = 0): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * --stream-replicas (or $NATS_STREAM_REPLICAS): the stream's copies in a JetStream cluster.
 * Unset leaves an existing stream as it is (a new one gets 1).
 */
export function streamReplicasFlag(value: string | undefined): number | undefined {
  const raw = flagOrEnv(value, process.env.NATS_STREAM_REPLICAS);
  if (raw === undefined || raw === "") return undefined;
  const n = intFlag("stream-replicas", raw, 1, 1);
  if (n > 5) throw new UsageError(`--stream-replicas must be at most 5 (JetStream's limit), got ${n}`);
  return n;
}

export function durationFlag(name: string, value: string | undefined, def: string): number {
  try {
    return parseDuration(value ?? def);
  } catch {
    throw new UsageError(`--${name}: invalid duration ${JSON.stringify(value)} (examples: 30s, 5m, 1h30m)`);
  }
}
