// client-go's rate limiters: per-item exponential backoff, a token bucket shared by
// every item, and the max of the two (DefaultControllerRateLimiter).
import { realClock, type Clock } from "./clock.ts";

export interface RateLimiter<K> {
  /** How long to wait before this item is processed again. */
  when(item: K): number;
  /** Forget an item's failures (after a success). */
  forget(item: K): void;
  numRequeues(item: K): number;
}

/** @default base 5 ms, max 1000 s */
export class ItemExponentialFailureRateLimiter<K> implements RateLimiter<K> {
  #failures = new Map<K, number>();
  readonly baseMs: number;
  readonly maxMs: number;
  constructor(baseMs = 5, maxMs = 1_000_000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }
  when(item: K): number {
    const n = this.#failures.get(item) ?? 0;
    this.#failures.set(item, n + 1);
    return Math.min(this.baseMs * 2 ** n, this.maxMs);
  }
  forget(item: K): void {
    this.#failures.delete(item);
  }
  numRequeues(item: K): number {
    return this.#failures.get(item) ?? 0;
  }
}

/** A token bucket: `qps` tokens a second, at most `burst` saved. @default 10 qps, burst 100 */
export class BucketRateLimiter<K> implements RateLimiter<K> {
  #tokens: number;
  #last: number;
  readonly qps: number;
  readonly burst: number;
  #clock: Clock;
  constructor(qps = 10, burst = 100, clock: Clock = realClock) {
    this.qps = qps;
    this.burst = burst;
    this.#clock = clock;
    this.#tokens = burst;
    this.#last = clock.now();
  }
  when(_item: K): number {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.qps);
    this.#last = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.qps) * 1000);
  }
  forget(_item: K): void {}
  numRequeues(_item: K): number {
    return 0;
  }
}

export class MaxOfRateLimiter<K> implements RateLimiter<K> {
  #limiters: RateLimiter<K>[];
  constructor(...limiters: RateLimiter<K>[]) {
    this.#limiters = limiters;
  }
  when(item: K): number {
    return Math.max(...this.#limiters.map((l) => l.when(item)));
  }
  forget(item: K): void {
    for (const l of this.#limiters) l.forget(item);
  }
  numRequeues(item: K): number {
    return Math.max(...this.#limiters.map((l) => l.numRequeues(item)));
  }
}

export function defaultControllerRateLimiter<K>(clock: Clock = realClock): RateLimiter<K> {
  return new MaxOfRateLimiter<K>(
    new ItemExponentialFailureRateLimiter<K>(5, 1_000_000),
    new BucketRateLimiter<K>(10, 100, clock),
  );
}
