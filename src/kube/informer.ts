// An informer that does not trust the server to say what it missed: list (paginated,
// no resourceVersion), watch from the list's version, re-list on every watch error and
// periodically, and diff each list against the cache to find deletions. sbomscanner's
// storage server never sends 410 Gone and never reports deletions that happened while
// no watch was open, and client-node's ListWatch relies on both (see docs/sbomscanner.md).
// Objects are transformed on arrival, so the cache holds only what the controller reads.
// A quiet watch is normal: it lives until the server ends it or the resync period is up.
import { Watch, type KubeConfig } from "@kubernetes/client-node";

import { type Logger, silentLogger } from "../util/index.ts";

import { apiMessage } from "./errors.ts";
import { realClock, sleepOn, type Clock } from "./clock.ts";

export interface RawObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface ListPage {
  items: RawObject[];
  metadata?: { resourceVersion?: string; continue?: string };
}

export interface Handlers<T> {
  add?(key: string, obj: T): void;
  update?(key: string, obj: T, old: T): void;
  delete?(key: string, obj: T): void;
}

/**
 * Start a watch: events go to `onEvent` until the stream ends (`onDone` with no error)
 * or fails; the returned handle aborts it. client-node's Watch.watch has this shape.
 */
export type WatchFn = (
  path: string,
  query: Record<string, string | number | boolean>,
  onEvent: (type: string, obj: RawObject) => void,
  onDone: (err?: unknown) => void,
) => Promise<{ abort(): void }>;

/**
 * client-node's Watch, without its client-side inactivity cut (30 s by default, which
 * would end every quiet watch and turn it into a re-list): the server's own timeout
 * (timeoutSeconds) ends a watch, and `inactivityMs` only guards against a dead peer.
 */
export function kubeWatch(kc: KubeConfig, inactivityMs: number): WatchFn {
  const w = new Watch(kc);
  // Declared private in client-node 2.0's types, read on every request in its watch.js.
  (w as unknown as { requestTimeoutMs: number }).requestTimeoutMs = inactivityMs;
  return async (path, query, onEvent, onDone) => {
    const req = await w.watch(path, query, onEvent, onDone);
    return { abort: () => req.abort() };
  };
}

/** @default 300_000 */
export const DEFAULT_RESYNC_MS = 300_000;
/** @default 100 */
export const DEFAULT_PAGE_SIZE = 100;

export interface InformerOptions<T> {
  name: string;
  /** For the default watch (client-node's); give `watch` instead to use another. */
  kc?: KubeConfig;
  watch?: WatchFn;
  clock?: Clock;
  /** One page of the list; never pass a resourceVersion (sbomscanner's server returns a partial list). */
  list: (page: { limit: number; continueToken?: string }) => Promise<ListPage>;
  /** API path to watch, e.g. /apis/g/v1/namespaces/ns/things or /apis/g/v1/things. */
  watchPath: string;
  /** Reduce an object to what the cache keeps; undefined drops it. */
  transform: (obj: RawObject) => T;
  /** The resourceVersion of a transformed object (to skip no-op updates). */
  resourceVersion: (obj: T) => string | undefined;
  /** Full re-list period. @default DEFAULT_RESYNC_MS */
  resyncMs?: number;
  /** @default DEFAULT_PAGE_SIZE */
  pageSize?: number;
  /** Backoff after an error: doubles from min to max. @default 1000, 30_000 */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  log?: Logger;
  /** Called after each completed list, with the number of objects (metrics, tests). */
  onList?: (count: number, stats: ListStats) => void;
  /**
   * A cheap relist, after the first full list: metadata only (PartialObjectMetadataList),
   * and in full only the objects whose resourceVersion moved (or that are new). A large
   * cache of unchanged objects then costs a few hundred bytes each to relist.
   */
  metadataRelist?: {
    list: (page: { limit: number; continueToken?: string }) => Promise<ListPage>;
    /** The whole object; undefined when it is gone. */
    get: (item: RawObject) => Promise<RawObject | undefined>;
  };
}

/** What one list did: a full one, or a metadata relist with how many objects it got in full. */
export interface ListStats {
  full: boolean;
  items: number;
  fetched: number;
}

/** Read access to a cache (one informer, or several merged: one per watched namespace). */
export interface Store<T> {
  get(key: string): T | undefined;
  values(): Iterable<T>;
  readonly size: number;
}

export function mergedStore<T>(stores: Store<T>[]): Store<T> {
  if (stores.length === 1) return stores[0]!;
  return {
    get: (key) => {
      for (const s of stores) {
        const v = s.get(key);
        if (v !== undefined) return v;
      }
      return undefined;
    },
    *values() {
      for (const s of stores) yield* s.values();
    },
    get size() {
      return stores.reduce((n, s) => n + s.size, 0);
    },
  };
}

export function objectKey(o: RawObject): string {
  const ns = o.metadata?.namespace;
  return ns ? `${ns}/${o.metadata?.name}` : (o.metadata?.name ?? "");
}

export class Informer<T> implements Store<T> {
  #opts: InformerOptions<T>;
  #cache = new Map<string, T>();
  #handlers: Handlers<T>[] = [];
  #synced = false;
  #syncWaiters: Array<() => void> = [];
  #log: Logger;
  #lists = 0;
  #clock: Clock;
  #watchFn: WatchFn;

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
    this.#log = (opts.log ?? silentLogger).child({ informer: opts.name });
    this.#clock = opts.clock ?? realClock;
    const resync = opts.resyncMs ?? DEFAULT_RESYNC_MS;
    if (opts.watch) this.#watchFn = opts.watch;
    else if (opts.kc) this.#watchFn = kubeWatch(opts.kc, resync + 60_000);
    else throw new Error(`informer ${opts.name}: give kc or watch`);
  }

  on(h: Handlers<T>): void {
    this.#handlers.push(h);
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  keys(): IterableIterator<string> {
    return this.#cache.keys();
  }

  values(): IterableIterator<T> {
    return this.#cache.values();
  }

  get size(): number {
    return this.#cache.size;
  }

  /** Completed lists since start. */
  get lists(): number {
    return this.#lists;
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#syncWaiters.push(resolve);
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  }

  #emit(kind: "add" | "update" | "delete", key: string, obj: T, old?: T): void {
    for (const h of this.#handlers) {
      try {
        if (kind === "add") h.add?.(key, obj);
        else if (kind === "update") h.update?.(key, obj, old as T);
        else h.delete?.(key, obj);
      } catch (err) {
        // Handlers only enqueue keys; a throw is a bug, logged, never fatal to the informer.
        this.#log.error({ err, key }, "informer handler threw");
      }
    }
  }

  #upsert(raw: RawObject): void {
    const key = objectKey(raw);
    const obj = this.#opts.transform(raw);
    const old = this.#cache.get(key);
    this.#cache.set(key, obj);
    if (!old) this.#emit("add", key, obj);
    else if (this.#opts.resourceVersion(old) !== this.#opts.resourceVersion(obj))
      this.#emit("update", key, obj, old);
  }

  #remove(key: string): void {
    const old = this.#cache.get(key);
    if (!old) return;
    this.#cache.delete(key);
    this.#emit("delete", key, old);
  }

  /**
   * List every page, replace the cache, emit the differences. Returns the list's
   * resourceVersion. After the first list, a metadata relist when one is configured.
   */
  async #relist(signal: AbortSignal): Promise<string | undefined> {
    const mr = this.#synced ? this.#opts.metadataRelist : undefined;
    const seen = new Set<string>();
    let continueToken: string | undefined;
    let rv: string | undefined;
    let fetched = 0;
    do {
      signal.throwIfAborted();
      const p = { limit: this.#opts.pageSize ?? DEFAULT_PAGE_SIZE, continueToken };
      const page = await (mr ? mr.list(p) : this.#opts.list(p));
      rv ??= page.metadata?.resourceVersion;
      for (const item of page.items ?? []) {
        const key = objectKey(item);
        if (mr) {
          const cur = this.#cache.get(key);
          const moved =
            cur === undefined || this.#opts.resourceVersion(cur) !== item.metadata?.resourceVersion;
          if (moved) {
            const full = await mr.get(item);
            fetched++;
            if (!full) continue; // gone since the list: its delete comes below
            this.#upsert(full);
          }
        } else this.#upsert(item);
        seen.add(key);
      }
      continueToken = page.metadata?.continue || undefined;
    } while (continueToken);
    for (const key of [...this.#cache.keys()]) if (!seen.has(key)) this.#remove(key);
    this.#lists++;
    this.#opts.onList?.(seen.size, { full: !mr, items: seen.size, fetched: mr ? fetched : seen.size });
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w();
    }
    return rv;
  }

  /** Watch until the stream ends, an error, the resync deadline or abort. */
  async #watch(
    rv: string | undefined,
    deadline: number,
    signal: AbortSignal,
  ): Promise<{ result: "resync" | "ended" | "error"; rv?: string; err?: unknown }> {
    let lastRV = rv;
    let failure: unknown;
    // Aborted while the list was in flight: an abort listener added now would never fire,
    // and the watch would run on to the resync deadline.
    if (signal.aborted) return { result: "ended", rv };
    return new Promise((resolve) => {
      let settled = false;
      let req: { abort(): void } | undefined;
      const finish = (result: "resync" | "ended" | "error", err?: unknown) => {
        if (settled) return;
        settled = true;
        timer.cancel();
        signal.removeEventListener("abort", onAbort);
        req?.abort();
        resolve({ result, rv: lastRV, err });
      };
      const timer = this.#clock.setTimeout(() => finish("resync"), Math.max(0, deadline - this.#clock.now()));
      const onAbort = () => finish("ended");
      signal.addEventListener("abort", onAbort, { once: true });
      // The server ends the watch at the resync deadline (or earlier, its own limit).
      const query: Record<string, string | number | boolean> = {
        allowWatchBookmarks: true,
        timeoutSeconds: Math.max(1, Math.ceil((deadline - this.#clock.now()) / 1000)),
      };
      if (lastRV) query.resourceVersion = lastRV;
      this.#watchFn(
        this.#opts.watchPath,
        query,
        (type: string, obj: RawObject) => {
          if (settled) return;
          if (type === "ERROR") {
            failure = obj;
            finish("error", new Error(`watch error: ${JSON.stringify(obj).slice(0, 300)}`));
            return;
          }
          if (type === "BOOKMARK") {
            lastRV = obj.metadata?.resourceVersion ?? lastRV;
            return;
          }
          if (type === "DELETED") {
            // A DELETED event may carry the object's old resourceVersion: do not move back.
            this.#remove(objectKey(obj));
            return;
          }
          this.#upsert(obj);
          lastRV = obj.metadata?.resourceVersion ?? lastRV;
        },
        (err?: unknown) => {
          // No data for longer than the inactivity guard: the stream is quiet or dead;
          // either way, watch again from where we were (no re-list).
          if (isTimeout(err) && !failure) return finish("ended");
          finish(err || failure ? "error" : "ended", err ?? failure);
        },
      )
        .then((r) => {
          req = r;
          if (settled) r.abort();
        })
        .catch((err: unknown) => finish("error", err));
    });
  }

  /** Run until `signal` aborts. Never throws: errors are logged and retried with backoff. */
  async run(signal: AbortSignal): Promise<void> {
    const min = this.#opts.backoffMinMs ?? 1000;
    const max = this.#opts.backoffMaxMs ?? 30_000;
    const resync = this.#opts.resyncMs ?? DEFAULT_RESYNC_MS;
    let backoff = min;
    while (!signal.aborted) {
      try {
        let rv = await this.#relist(signal);
        backoff = min;
        const deadline = this.#clock.now() + resync;
        for (;;) {
          const w = await this.#watch(rv, deadline, signal);
          if (signal.aborted || w.result === "resync") break;
          if (w.result === "error") throw w.err ?? new Error("watch failed");
          // A clean end (the server's timeout): watch again from where we were.
          rv = w.rv;
        }
      } catch (err) {
        if (signal.aborted) break;
        this.#log.warn(
          { err: apiMessage(err), backoffMs: backoff },
          "list/watch failed; re-listing after backoff",
        );
        await sleepOn(this.#clock, backoff, signal);
        backoff = Math.min(backoff * 2, max);
      }
    }
  }
}

function isTimeout(err: unknown): boolean {
  return (err as { name?: string } | undefined)?.name === "TimeoutError";
}
