import { test } from "node:test";
import assert from "node:assert/strict";
import { WorkQueue } from "./workqueue.ts";
import { FakeClock } from "./clock.ts";
import { BucketRateLimiter, ItemExponentialFailureRateLimiter, MaxOfRateLimiter } from "./ratelimiter.ts";

test("workqueue - a key added twice while queued is queued once (fair)", async () => {
  const q = new WorkQueue<string>({ clock: new FakeClock() });
  q.add("a");
  q.add("b");
  q.add("a");
  assert.equal(q.len(), 2);
  assert.equal(await q.get(), "a");
  assert.equal(await q.get(), "b");
});

test("workqueue - a key added while processing comes back after done, never twice at once (stingy)", async () => {
  const q = new WorkQueue<string>({ clock: new FakeClock() });
  q.add("a");
  const a = await q.get();
  q.add("a");
  q.add("a");
  assert.equal(q.len(), 0, "not handed to a second worker while processing");
  q.done(a!);
  assert.equal(q.len(), 1);
  assert.equal(await q.get(), "a");
  q.done("a");
  assert.equal(q.len(), 0);
});

test("workqueue - a waiting get receives the next add", async () => {
  const q = new WorkQueue<string>({ clock: new FakeClock() });
  const p = q.get();
  q.add("x");
  assert.equal(await p, "x");
});

test("workqueue - addAfter waits for the clock; an earlier time wins", async () => {
  const clock = new FakeClock();
  const q = new WorkQueue<string>({ clock });
  q.addAfter("a", 1000);
  q.addAfter("a", 500);
  q.addAfter("a", 2000);
  clock.advance(499);
  assert.equal(q.len(), 0);
  clock.advance(1);
  assert.equal(q.len(), 1);
  clock.advance(5000);
  assert.equal(q.len(), 1, "the later timers were replaced, not stacked");
});

test("workqueue - addRateLimited backs off exponentially per item; forget resets", async () => {
  const clock = new FakeClock();
  const q = new WorkQueue<string>({ clock, rateLimiter: new ItemExponentialFailureRateLimiter(5, 1000) });
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) {
    const before = clock.now();
    q.addRateLimited("k");
    let waited = 0;
    while (q.len() === 0) {
      clock.advance(1);
      waited++;
    }
    delays.push(clock.now() - before);
    assert.ok(waited > 0);
    const k = await q.get();
    q.done(k!);
  }
  assert.deepEqual(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
  assert.equal(q.numRequeues("k"), 10);
  q.forget("k");
  assert.equal(q.numRequeues("k"), 0);
});

test("ratelimiter - the bucket allows a burst, then qps; max-of takes the larger delay", () => {
  const clock = new FakeClock();
  const b = new BucketRateLimiter<string>(10, 3, clock);
  assert.deepEqual([b.when("a"), b.when("b"), b.when("c")], [0, 0, 0]);
  assert.equal(b.when("d"), 100);
  clock.advance(1000);
  assert.equal(b.when("e"), 0);
  const m = new MaxOfRateLimiter<string>(
    new ItemExponentialFailureRateLimiter(5, 1000),
    new BucketRateLimiter(10, 100, clock),
  );
  assert.equal(m.when("x"), 5);
  assert.equal(m.when("x"), 10);
});

test("workqueue - shutDown wakes waiters; shutDownWithDrain waits for in-flight work", async () => {
  const q = new WorkQueue<string>({ clock: new FakeClock() });
  const waiting = q.get();
  q.shutDown();
  assert.equal(await waiting, undefined);
  const q2 = new WorkQueue<string>({ clock: new FakeClock() });
  q2.add("a");
  const a = await q2.get();
  let drained = false;
  const d = q2.shutDownWithDrain().then(() => (drained = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(drained, false);
  q2.add("b");
  assert.equal(q2.len(), 0, "no new work after shutdown");
  q2.done(a!);
  await d;
  assert.equal(drained, true);
  assert.equal(await q2.get(), undefined);
});
