// Several BuildKits: each patch goes to the replica a rendezvous hash of its source
// repository picks, so an image's base layers stay warm in one BuildKit's cache (BuildKit
// keeps its cache per daemon), and adding or losing a replica moves only the repositories
// that hashed to it. The same hash ranks the others: when the chosen one is down the patch
// goes to the next, and the next repository is not reshuffled.
import { createHash } from "node:crypto";
import { type ImageRef, PatchError, Reason } from "../api/index.ts";

/** What picks the replica: the repository, without tag or digest. */
export function builderKey(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Every address, the one to try first first (highest random weight hashing). */
export function builderOrder(addrs: readonly string[], key: string): string[] {
  const weight = (addr: string) => createHash("sha256").update(addr).update("\0").update(key).digest("hex");
  return [...new Set(addrs)]
    .map((addr) => ({ addr, w: weight(addr) }))
    .sort((a, b) => (a.w < b.w ? 1 : a.w > b.w ? -1 : 0))
    .map((x) => x.addr);
}

/** Which BuildKit ran the patch, and the ones tried before it that were down. */
export interface BuilderChoice {
  addr: string;
  skipped: string[];
}

/**
 * `run` on the first address of the order; on BuildKitUnreachable, on the next. Any other
 * failure, and the last replica's, is the attempt's own. The signal ends the loop.
 */
export async function onBuilders<T>(
  addrs: readonly string[],
  key: string,
  run: (addr: string) => Promise<T>,
  o: { signal?: AbortSignal; onFailover?: (from: string, to: string, err: PatchError) => void } = {},
): Promise<{ result: T; builder: BuilderChoice }> {
  const order = builderOrder(addrs, key);
  if (order.length === 0) throw new PatchError(Reason.BuildKitUnreachable, "no BuildKit address configured");
  const skipped: string[] = [];
  for (let i = 0; ; i++) {
    const addr = order[i]!;
    try {
      return { result: await run(addr), builder: { addr, skipped } };
    } catch (err) {
      const next = order[i + 1];
      const down = err instanceof PatchError && err.reason === Reason.BuildKitUnreachable;
      if (!down || !next || o.signal?.aborted) throw err;
      skipped.push(addr);
      o.onFailover?.(addr, next, err);
    }
  }
}

/** A comma-separated list of BuildKit addresses (one, or one per replica). */
export function parseBuilderAddrs(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}
