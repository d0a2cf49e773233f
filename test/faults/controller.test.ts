// Fault suite, controller side, on the real apiserver and real NATS JetStream (nothing
// consumes the stream here, so what it holds is exactly what the controller published):
// nats-server stopped and restarted in the middle of a burst of 1,000 report updates,
// and thousands of generated malformed and hostile reports.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/transport-node";
import { setup, type Env } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { createNamespace, listPatchJobs, reportsApi } from "../../src/devenv/kube.ts";
import { messagesIn } from "../support/stream.ts";
import { allQueuedAtLast, burstWithFault, pool, queuedOnce } from "../support/burst.ts";
import { reportFault, restartApiserver } from "../support/faults.ts";
import { idle } from "../support/controller.ts";
import { makeReport } from "../fixtures/make-report.ts";
import { admitted } from "../fixtures/malformed.ts";
import { connectNats } from "../../src/queue/index.ts";
import { type RunningController, startController } from "../../src/controller/index.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;

before(async () => {
  env = await setup({ registry: false, controllerManager: false });
  await installAllCRDs(env.kubeConfig());
  nc = await connectNats({ url: env.natsURL, name: "faults-controller" });
  ctl = await startController({
    kc: env.kubeConfig(),
    nc,
    resyncMs: 30_000,
    sweepIntervalMs: 2_000,
    staleQueuedMs: 30_000,
  });
});

after(async () => {
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

async function reconcileErrors(): Promise<number> {
  const m = await ctl.registry.getSingleMetric("vuln_patcher_reconcile_total")?.get();
  return m?.values.filter((v) => v.labels.result === "error").reduce((a, v) => a + v.value, 0) ?? 0;
}

test("faults - nats-server stopped and restarted during a burst of 1,000 report updates: every PatchJob Queued at its last generation, no message lost, none twice", async (t) => {
  const ns = "fault-nats";
  const kc = env.kubeConfig();
  const nats = env.nats!.component;
  const REPORTS = 100;
  const ROUNDS = 10;
  // NATS goes down after 300 updates and comes back after 700.
  const b = await burstWithFault(kc, ns, {
    reports: REPORTS,
    rounds: ROUNDS,
    fault: () => nats.stop(),
    undo: async () => void (await nats.start()),
  });
  const pjs = await allQueuedAtLast(kc, ns, REPORTS, ROUNDS);
  await idle(ctl);
  const q = await queuedOnce(env.natsURL, ns, pjs);
  assert.deepEqual(q.dupes, [], "no (PatchJob, generation) published twice");
  assert.deepEqual(q.lost, [], "every PatchJob's last generation is on the stream");
  reportFault(t, {
    fault: "nats-restart-during-burst",
    injected: `nats-server stopped after update ${b.faultAt} of ${b.total}, restarted after update ${b.undoneAt}`,
    expected: `${REPORTS} PatchJobs Queued at their last generation; each last generation on the stream once; no duplicates`,
    observed: `${pjs.length} Queued at their last generation (${q.generations} generations in all); ${q.messages} messages, ${q.dupes.length} duplicates, ${q.lost.length} last generations missing`,
  });
});

test("faults - thousands of generated malformed and hostile reports: each PatchJob Invalid with a reason, no message, no reconcile error, the controller still works", async (t) => {
  const ns = "fault-fuzz";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
  const reports = reportsApi(kc);
  const N = 1000;
  const SEED = 424242;
  const errorsBefore = await reconcileErrors();
  const refused: string[] = [];
  const kinds = new Map<string, string>();
  await pool(N, 8, async (i) => {
    const g = admitted(SEED, i, ns);
    kinds.set(g.report.metadata.name, g.kind);
    try {
      await reports.create(g.report);
    } catch (err) {
      // The apiserver itself refusing a report is fine (it never reaches us): count it.
      refused.push(`${g.kind}: ${(err as Error).message.slice(0, 120)}`);
      kinds.delete(g.report.metadata.name);
    }
  });
  const admittedCount = N - refused.length;
  assert.ok(
    admittedCount > N * 0.9,
    `the apiserver admitted ${admittedCount} of ${N}: ${refused.slice(0, 3).join(" | ")}`,
  );
  const pjs = await waitFor(
    `${admittedCount} Invalid PatchJobs`,
    async () => {
      const list = await listPatchJobs(kc, ns);
      return list.length === admittedCount && list.every((p) => p.status?.phase === "Invalid")
        ? list
        : undefined;
    },
    300_000,
    1000,
  );
  for (const p of pjs) {
    const where = `${p.metadata.name} (${kinds.get(p.metadata.name)})`;
    assert.equal(p.status?.reason, "InvalidReport", where);
    assert.ok((p.status?.message ?? "").length > 20, `${where}: ${p.status?.message}`);
    assert.equal(p.spec.image, undefined, `${where}: no image in the spec, nothing to run`);
    assert.equal(p.spec.reportRef?.name, p.metadata.name, where);
  }
  assert.equal(await messagesIn(env.natsURL, ns), 0, "nothing was published for a worker");
  const errors = (await reconcileErrors()) - errorsBefore;
  assert.equal(errors, 0, "no reconcile failed (every write was valid for the apiserver)");
  // Still alive and well: a valid report in the same namespace is queued.
  await reports.create(makeReport({ name: "valid-after-fuzz", namespace: ns }));
  await waitFor(
    "the valid report queued",
    async () =>
      (await listPatchJobs(kc, ns)).find(
        (p) => p.metadata.name === "valid-after-fuzz" && p.status?.phase === "Queued",
      ),
    60_000,
  );
  assert.equal(await messagesIn(env.natsURL, ns), 1);
  const sample = pjs.find((p) => /hostile repository/.test(kinds.get(p.metadata.name) ?? ""));
  reportFault(t, {
    fault: "malformed-reports",
    injected: `${N} generated reports (seed ${SEED}; ${new Set([...kinds.values()].map((k) => k.split(" + ")[0])).size} kinds: hostile image refs, flag/shell injection, bad digests and platforms, invalid versions and names, oversized values); ${refused.length} refused by the apiserver itself`,
    expected: "each admitted report -> PatchJob Invalid with a reason; 0 messages; 0 reconcile errors",
    observed: `${pjs.length} Invalid (reason InvalidReport), 0 messages, ${errors} reconcile errors; e.g. "${sample?.status?.message?.slice(0, 140) ?? ""}"`,
  });
});

test("faults - the apiserver restarted under the controller (no leader election): its informers reconnect by themselves and a new report is queued", async (t) => {
  const ns = "fault-apiserver";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "before", namespace: ns }));
  await waitFor("before Queued", async () =>
    (await listPatchJobs(kc, ns)).find((p) => p.status?.phase === "Queued"),
  );
  const downMs = await restartApiserver(env);
  const t1 = performance.now();
  await reports.create(makeReport({ name: "after", namespace: ns, tag: "after" }));
  const pj = await waitFor(
    "after Queued",
    async () =>
      (await listPatchJobs(kc, ns)).find((p) => p.metadata.name === "after" && p.status?.phase === "Queued"),
    120_000,
  );
  const ms = performance.now() - t1;
  assert.equal(pj.spec.image?.tag, "after");
  assert.equal(await messagesIn(env.natsURL, ns), 2, "one message each, none repeated after the reconnect");
  reportFault(t, {
    fault: "apiserver-restart-informers",
    injected: `kube-apiserver stopped and started (${(downMs / 1000).toFixed(1)} s) under a running controller without leader election`,
    expected:
      "the informers' watches reconnect with backoff; a report created afterwards is queued; nothing republished",
    observed: `queued ${(ms / 1000).toFixed(1)} s after creation; 2 messages in all`,
  });
});
