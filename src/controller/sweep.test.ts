// The sweep's choices over a cache of PatchJobs, with a simulated publisher and
// apiserver (what it publishes and writes is counted).
import { test } from "node:test";
import assert from "node:assert/strict";
import { type PatchJob, type PatchJobStatus, Phase, Reason, Source } from "../api/index.ts";
import { FakeClock, type PatchJobClient, type Store } from "../kube/index.ts";
import type { Publisher } from "../queue/index.ts";
import { silentLogger } from "../util/index.ts";
import { sweepOnce } from "./sweep.ts";

const NOW = Date.parse("2026-11-30T12:00:00Z");
const ago = (ms: number) => new Date(NOW - ms).toISOString();

function pj(name: string, status: PatchJobStatus): PatchJob {
  return {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "PatchJob",
    metadata: { name, namespace: "ns", uid: `u-${name}`, generation: 1 },
    spec: {
      source: Source.Manual,
      image: { registryURI: "r", repository: "x", tag: "1", platform: "linux/amd64" },
    },
    status: { observedGeneration: 1, ...status },
  };
}

function harness(items: PatchJob[], pending: Set<string> = new Set()) {
  const published: string[] = [];
  const written: Array<{ name: string; status: PatchJobStatus }> = [];
  const enqueued: string[] = [];
  const store: Store<PatchJob> = {
    get: (k) => items.find((p) => `ns/${p.metadata.name}` === k),
    values: () => items,
    size: items.length,
  };
  const publisher: Publisher = {
    publish: async (r) => (published.push(r.name), { seq: published.length, duplicate: false }),
    pending: async (r) => pending.has(r.name),
  };
  const client = {
    updateStatus: async (p: PatchJob, status: PatchJobStatus) => (
      written.push({ name: p.metadata.name, status }),
      { ...p, status }
    ),
  } as unknown as PatchJobClient;
  const clock = new FakeClock(NOW);
  return { published, written, enqueued, store, publisher, client, clock };
}

test("sweep - a Running PatchJob without heartbeats and without its message is queued again (HeartbeatLost); a live or pending one is left", async () => {
  const dead = pj("dead", {
    phase: Phase.Running,
    worker: "w-1",
    startTime: ago(20 * 60_000),
    heartbeatTime: ago(6 * 60_000),
  });
  const alive = pj("alive", {
    phase: Phase.Running,
    worker: "w-2",
    startTime: ago(20 * 60_000),
    heartbeatTime: ago(20_000),
  });
  const inStream = pj("in-stream", { phase: Phase.Running, worker: "w-3", heartbeatTime: ago(30 * 60_000) });
  const h = harness([dead, alive, inStream], new Set(["in-stream"]));
  const out = await sweepOnce({
    patchJobs: h.store,
    enqueue: (_k, key) => h.enqueued.push(key),
    publisher: h.publisher,
    client: h.client,
    intervalMs: 60_000,
    staleMs: 300_000,
    staleRunningMs: 300_000,
    log: silentLogger,
    clock: h.clock,
  });
  assert.deepEqual(out, ["ns/dead"]);
  assert.deepEqual(h.published, ["dead"], "one message: the dead worker's PatchJob");
  assert.equal(h.written.length, 1);
  const s = h.written[0]!.status;
  assert.deepEqual([s.phase, s.reason], [Phase.Queued, Reason.HeartbeatLost]);
  assert.match(s.message ?? "", /worker w-1 stopped sending heartbeats/);
  assert.equal(s.heartbeatTime, undefined, "the next attempt starts its own heartbeats");
});

test("sweep - a stale Queued PatchJob the tenancy rules now refuse is recorded Denied, not published", async () => {
  const stale = pj("stale", { phase: Phase.Queued, queuedTime: ago(10 * 60_000) });
  const h = harness([stale]);
  await sweepOnce({
    patchJobs: h.store,
    enqueue: () => {},
    publisher: h.publisher,
    client: h.client,
    intervalMs: 60_000,
    staleMs: 300_000,
    tenancy: () => ({ ok: false, reason: Reason.TargetNotAllowed, message: "no longer granted" }),
    log: silentLogger,
    clock: h.clock,
  });
  assert.deepEqual(h.published, []);
  assert.deepEqual(
    h.written.map((w) => [w.status.phase, w.status.reason]),
    [[Phase.Denied, Reason.TargetNotAllowed]],
  );
});
