import { test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import type { V1Lease } from "@kubernetes/client-node";
import { FakeClock } from "./clock.ts";
import { LeaderElector, type LeaseApi } from "./leader.ts";

async function settle(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

/** An apiserver's Lease in memory: resourceVersions, 409 on a stale write, 404 before it exists. */
function leaseServer() {
  let lease: V1Lease | undefined;
  let rv = 0;
  const fail = new Set<string>();
  const writes: string[] = [];
  const err = (code: number) => Object.assign(new Error(`HTTP ${code}`), { code });
  const copy = (l: V1Lease): V1Lease => structuredClone(l);
  const api = (who: string): LeaseApi => ({
    async readNamespacedLease() {
      if (fail.has(who)) throw err(503);
      if (!lease) throw err(404);
      return copy(lease);
    },
    async createNamespacedLease({ body }) {
      if (fail.has(who)) throw err(503);
      if (lease) throw err(409);
      lease = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      writes.push(`${who} create`);
      return copy(lease);
    },
    async replaceNamespacedLease({ body }) {
      if (fail.has(who)) throw err(503);
      if (body.metadata?.resourceVersion !== lease?.metadata?.resourceVersion) throw err(409);
      lease = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++rv) } };
      writes.push(`${who} ${body.spec?.holderIdentity || "release"}`);
      return copy(lease);
    },
  });
  return { api, fail, writes, holder: () => lease?.spec?.holderIdentity };
}

function candidate(server: ReturnType<typeof leaseServer>, clock: FakeClock, identity: string) {
  const state = { leading: false, stopped: 0, work: undefined as AbortSignal | undefined };
  const elector = new LeaderElector({
    leases: server.api(identity),
    clock,
    namespace: "ns",
    name: "lease",
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    onStartedLeading: (signal) => {
      state.leading = true;
      state.work = signal;
      return new Promise<void>((resolve) =>
        signal.addEventListener("abort", () => ((state.leading = false), resolve()), { once: true }),
      );
    },
    onStoppedLeading: () => state.stopped++,
  });
  return { elector, state };
}

/** Move the fake clock in retry-sized steps, letting the electors run between them. */
async function advance(clock: FakeClock, ms: number, step = 500): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await settle();
  }
}

test("leader election - one leads, the other waits; a leader cut off from the apiserver steps down after renewDeadline, the standby leads only after the lease expires", async () => {
  const clock = new FakeClock(Date.parse("2026-11-30T12:00:00Z"));
  const server = leaseServer();
  const a = candidate(server, clock, "a");
  const b = candidate(server, clock, "b");
  const stop = new AbortController();
  const runA = a.elector.run(stop.signal);
  await settle();
  const runB = b.elector.run(stop.signal);
  await advance(clock, 6_000);
  assert.equal(a.state.leading, true);
  assert.equal(b.state.leading, false);
  assert.equal(server.holder(), "a");
  assert.ok(a.elector.check(), "healthy while renewing");

  server.fail.add("a"); // a partition: a's renewals fail from now on
  const cutAt = clock.now();
  await advance(clock, 9_000);
  assert.equal(a.state.leading, true, "still within renewDeadline (10 s)");
  assert.equal(b.state.leading, false, "b waits for the lease to expire");
  await advance(clock, 3_000);
  assert.equal(a.state.work?.aborted, true, "a's leader work was cancelled");
  assert.equal(await runA, true, "run() says leadership was lost (not given up)");
  assert.equal(a.state.stopped, 1, "onStoppedLeading always runs");
  assert.equal(
    b.state.leading,
    false,
    "b judges expiry by its own observation, 15 s after the last renewal it saw",
  );
  await advance(clock, 8_000);
  assert.equal(b.state.leading, true);
  assert.equal(server.holder(), "b");
  assert.ok(clock.now() - cutAt >= 15_000, "never two leaders: b led only after a's lease had run out");
  stop.abort();
  await runB;
});

test("leader election - a clean shutdown releases the lease, and the standby takes it at its next try", async () => {
  const clock = new FakeClock(Date.parse("2026-11-30T12:00:00Z"));
  const server = leaseServer();
  const a = candidate(server, clock, "a");
  const b = candidate(server, clock, "b");
  const stopA = new AbortController();
  const stopB = new AbortController();
  const runA = a.elector.run(stopA.signal);
  await settle();
  const runB = b.elector.run(stopB.signal);
  await advance(clock, 4_000);
  assert.equal(a.state.leading, true);
  stopA.abort();
  assert.equal(await runA, false, "given up, not lost");
  assert.ok(server.writes.includes("a release"), "the lease was released");
  await advance(clock, 3_000);
  assert.equal(b.state.leading, true, "b took over within one retry period, not a lease duration");
  stopB.abort();
  await runB;
});

test("leader election - settings are checked as client-go checks them", () => {
  const base = {
    leases: leaseServer().api("x"),
    namespace: "ns",
    name: "lease",
    identity: "x",
    onStartedLeading: async () => {},
  };
  assert.throws(
    () => new LeaderElector({ ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }),
    /leaseDuration must be greater than renewDeadline/,
  );
  assert.throws(
    () => new LeaderElector({ ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }),
    /renewDeadline must be greater than retryPeriod\*JitterFactor/,
  );
  assert.throws(() => new LeaderElector({ ...base, identity: "" }), /identity must not be empty/);
});
