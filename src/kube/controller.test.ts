import { test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { WorkQueue } from "./workqueue.ts";
import { FakeClock } from "./clock.ts";
import { ItemExponentialFailureRateLimiter } from "./ratelimiter.ts";
import { done, requeueAfter, runController, type Outcome, type Reconciler } from "./controller.ts";

/** Lets every promise callback that is ready run. */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

function harness(reconcile: Reconciler, o: { concurrency?: number; timeoutMs?: number } = {}) {
  const clock = new FakeClock();
  const queue = new WorkQueue<string>({
    clock,
    rateLimiter: new ItemExponentialFailureRateLimiter(10, 1000),
  });
  const outcomes: Array<[string, Outcome]> = [];
  const overruns: number[] = [];
  const stop = new AbortController();
  const running = runController(
    {
      name: "test",
      queue,
      reconcile,
      clock,
      concurrency: o.concurrency ?? 1,
      timeoutMs: o.timeoutMs ?? 1000,
      onResult: (outcome) => outcomes.push(["?", outcome]),
      onOverrun: (n) => overruns.push(n),
    },
    stop.signal,
  );
  return { clock, queue, outcomes, overruns, stop, running };
}

test("controller loop - a reconcile that ignores its timeout keeps its key busy until it stops; the worker moves on", async () => {
  const calls: string[] = [];
  let release!: () => void;
  let aborted: AbortSignal | undefined;
  const h = harness(async (key, signal) => {
    calls.push(key);
    if (key === "a" && calls.filter((k) => k === "a").length === 1) {
      aborted = signal;
      // Ignores its signal on purpose: only release() ends it.
      await new Promise<void>((r) => (release = r));
    }
    return done;
  });
  h.queue.add("a");
  await settle();
  assert.deepEqual(calls, ["a"]);
  h.clock.advance(1000);
  await settle();
  assert.equal(aborted?.aborted, true, "the overrunning reconcile was told to stop");
  assert.deepEqual(h.outcomes, [["?", "timeout"]]);
  assert.deepEqual(h.overruns, [1]);
  // "a" is wanted again, before "b": with one worker and a FIFO queue, "a" would run
  // first if it could start. It must not while its first reconcile is still running.
  h.queue.add("a");
  h.queue.add("b");
  h.clock.advance(10_000);
  await settle();
  assert.deepEqual(calls, ["a", "b"], "b ran on the freed worker; a did not start twice");
  release();
  await settle();
  assert.deepEqual(calls, ["a", "b", "a"], "a runs again once its first reconcile has stopped");
  assert.deepEqual(h.overruns, [1, 0]);
  h.clock.advance(10);
  await settle();
  assert.deepEqual(calls, ["a", "b", "a", "a"], "and the timeout, a failure, is retried with backoff");
  h.stop.abort();
  await h.running;
});

test("controller loop - success forgets, an error backs off per key, requeueAfter waits for the clock", async () => {
  const calls: string[] = [];
  let failures = 2;
  const h = harness(async (key) => {
    calls.push(key);
    if (key === "flaky" && failures-- > 0) throw new Error("apiserver said no");
    if (key === "later" && calls.filter((k) => k === "later").length === 1) return requeueAfter(500);
    return done;
  });
  h.queue.add("flaky");
  h.queue.add("later");
  await settle();
  assert.deepEqual(calls, ["flaky", "later"]);
  assert.equal(h.queue.numRequeues("flaky"), 1);
  h.clock.advance(9);
  await settle();
  assert.deepEqual(calls, ["flaky", "later"], "the first retry waits 10 ms");
  h.clock.advance(1);
  await settle();
  assert.deepEqual(calls, ["flaky", "later", "flaky"]);
  h.clock.advance(19);
  await settle();
  assert.equal(calls.filter((k) => k === "flaky").length, 2, "the second waits 20 ms");
  h.clock.advance(1);
  await settle();
  assert.equal(calls.filter((k) => k === "flaky").length, 3);
  assert.equal(h.queue.numRequeues("flaky"), 0, "a success forgets the failures");
  h.clock.advance(470);
  await settle();
  assert.equal(calls.filter((k) => k === "later").length, 2, "requeueAfter(500) ran again at 500 ms");
  assert.deepEqual(
    h.outcomes.map(([, o]) => o),
    ["error", "requeue_after", "error", "success", "success"],
  );
  h.stop.abort();
  await h.running;
});

test("controller loop - a key is never reconciled by two workers at once", async () => {
  let concurrent = 0;
  let most = 0;
  const perKey = new Map<string, number>();
  const resolvers: Array<() => void> = [];
  const h = harness(
    async (key) => {
      perKey.set(key, (perKey.get(key) ?? 0) + 1);
      concurrent++;
      most = Math.max(most, concurrent);
      await new Promise<void>((r) => resolvers.push(r));
      concurrent--;
      return done;
    },
    { concurrency: 4 },
  );
  for (let i = 0; i < 10; i++) h.queue.add("same");
  h.queue.add("other");
  await settle();
  assert.equal(most, 2, "one worker per key: 'same' and 'other'");
  h.queue.add("same");
  await settle();
  assert.equal(perKey.get("same"), 1, "added while processing: not started again yet");
  for (const r of resolvers.splice(0)) r();
  await settle();
  assert.equal(perKey.get("same"), 2, "it comes back once, after done");
  for (const r of resolvers.splice(0)) r();
  await settle();
  h.stop.abort();
  await h.running;
});

test("controller loop - shutdown cancels in-flight reconciles and waits for them", async () => {
  let sawAbort = false;
  const h = harness(
    (_key, signal) =>
      new Promise((resolve) =>
        signal.addEventListener(
          "abort",
          () => {
            sawAbort = true;
            resolve(done);
          },
          { once: true },
        ),
      ),
  );
  h.queue.add("x");
  await settle();
  h.stop.abort();
  await h.running;
  assert.equal(sawAbort, true);
  assert.equal(h.queue.shuttingDown(), true);
});
