// A port of client-go's work queue: a key added while queued is not queued twice
// ("fair"); a key added while it is being processed is marked dirty and comes back
// after done() ("stingy"), so no key is ever worked on by two workers at once. On top:
// addAfter (delaying queue) and addRateLimited/forget (rate-limited queue).
import { realClock, type Clock } from "./clock.ts";
import { defaultControllerRateLimiter, type RateLimiter } from "./ratelimiter.ts";

export interface WorkQueueOptions<K> {
  clock?: Clock;
  rateLimiter?: RateLimiter<K>;
  /** Called on every depth change (metrics). */
  onDepth?: (depth: number) => void;
}

export class WorkQueue<K = string> {
  #queue: K[] = [];
  #dirty = new Set<K>();
  #processing = new Set<K>();
  #waiters: Array<(item: K | undefined) => void> = [];
  #shuttingDown = false;
  #drain: Array<() => void> = [];
  #delayed = new Map<K, { at: number; cancel(): void }>();
  #clock: Clock;
  #limiter: RateLimiter<K>;
  #onDepth?: (depth: number) => void;

  constructor(opts: WorkQueueOptions<K> = {}) {
    this.#clock = opts.clock ?? realClock;
    this.#limiter = opts.rateLimiter ?? defaultControllerRateLimiter<K>(this.#clock);
    this.#onDepth = opts.onDepth;
  }

  add(item: K): void {
    if (this.#shuttingDown || this.#dirty.has(item)) return;
    this.#dirty.add(item);
    if (this.#processing.has(item)) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#dirty.delete(item);
      this.#processing.add(item);
      waiter(item);
      return;
    }
    this.#queue.push(item);
    this.#onDepth?.(this.#queue.length);
  }

  /** The next item, or undefined once the queue is shutting down and empty. */
  get(): Promise<K | undefined> {
    const item = this.#queue.shift();
    if (item !== undefined) {
      this.#dirty.delete(item);
      this.#processing.add(item);
      this.#onDepth?.(this.#queue.length);
      return Promise.resolve(item);
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Mark an item finished; if it was added meanwhile, it goes back in the queue. */
  done(item: K): void {
    this.#processing.delete(item);
    if (this.#dirty.has(item) && !this.#shuttingDown) {
      this.#dirty.delete(item);
      this.add(item);
    } else if (this.#dirty.has(item)) {
      this.#dirty.delete(item);
    }
    if (this.#processing.size === 0) for (const d of this.#drain.splice(0)) d();
  }

  /** Add after `ms`; a later call for the same item keeps the earlier time. */
  addAfter(item: K, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) return this.add(item);
    const at = this.#clock.now() + ms;
    const cur = this.#delayed.get(item);
    if (cur && cur.at <= at) return;
    cur?.cancel();
    const t = this.#clock.setTimeout(() => {
      this.#delayed.delete(item);
      this.add(item);
    }, ms);
    this.#delayed.set(item, { at, cancel: () => t.cancel() });
  }

  addRateLimited(item: K): void {
    this.addAfter(item, this.#limiter.when(item));
  }

  forget(item: K): void {
    this.#limiter.forget(item);
  }

  numRequeues(item: K): number {
    return this.#limiter.numRequeues(item);
  }

  len(): number {
    return this.#queue.length;
  }

  /** Items being worked on now. */
  processing(): number {
    return this.#processing.size;
  }

  shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Stop accepting work; waiting get()s resolve undefined. Queued items are dropped. */
  shutDown(): void {
    this.#shuttingDown = true;
    for (const d of this.#delayed.values()) d.cancel();
    this.#delayed.clear();
    this.#queue = [];
    this.#dirty.clear();
    for (const w of this.#waiters.splice(0)) w(undefined);
  }

  /** shutDown, then wait until every item being processed is done(). */
  async shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.#processing.size === 0) return;
    await new Promise<void>((resolve) => this.#drain.push(resolve));
  }
}
