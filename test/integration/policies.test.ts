// PatchPolicies against the real apiserver and real NATS JetStream: which reports are
// patched, DryRun, Scheduled (with an injectable clock: the real clock moved forward),
// limits, and what the apiserver and the controller say about an invalid policy.
// Nothing consumes the stream, so its messages are exactly what the controller published.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { listPatchJobs, reportsApi } from "../../src/devenv/kube.ts";
import { namespaces, testEnv } from "../support/shared.ts";
import { idle, observed } from "../support/controller.ts";
import { metricValue } from "../support/cli.ts";
import { streamMessages } from "../../test/support/stream.ts";
import { makeReport } from "../../test/fixtures/make-report.ts";
import { connectNats } from "../../src/queue/index.ts";
import { patchJobClient } from "../../src/kube/index.ts";
import type { PatchPolicy, PatchPolicySpec } from "../../src/api/index.ts";
import { startController, type RunningController } from "../../src/controller/manager.ts";
import type { NatsConnection } from "@nats-io/transport-node";

let CTL_NS: string;
let NS: Record<string, string>;
let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let api: CustomObjectsApi;
/** The controller's clock: the real one, moved by `offsetMs`. */
let offsetMs = 0;

before(async () => {
  env = await testEnv();
  const kc = env.kubeConfig();
  NS = await namespaces(
    env,
    "vp-system",
    "pol-match",
    "pol-none",
    "pol-dry",
    "pol-sched",
    "pol-invalid",
    "pol-limit",
    "pol-window",
    "pol-output",
  );
  CTL_NS = NS["vp-system"]!;
  api = kc.makeApiClient(CustomObjectsApi);
  nc = await connectNats({ url: env.natsURL, name: "policies-test" });
  ctl = await startController({
    kc,
    nc,
    namespaces: Object.values(NS),
    policyNamespace: CTL_NS,
    clock: () => new Date(Date.now() + offsetMs),
    policyStatusIntervalMs: 1_000,
    sweepIntervalMs: 60_000,
  });
});

after(async () => {
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

const G = { group: "vulnpatcher.io", version: "v1alpha1", plural: "patchpolicies" };

async function createPolicy(namespace: string, name: string, spec: PatchPolicySpec): Promise<void> {
  await api.createNamespacedCustomObject({
    ...G,
    namespace,
    body: { apiVersion: "vulnpatcher.io/v1alpha1", kind: "PatchPolicy", metadata: { name, namespace }, spec },
  });
}

async function getPolicy(namespace: string, name: string): Promise<PatchPolicy> {
  return (await api.getNamespacedCustomObject({ ...G, namespace, name })) as PatchPolicy;
}

function namespaceWith(_ns: string): ReturnType<typeof reportsApi> {
  return reportsApi(env.kubeConfig());
}

/** Create a report and wait until the controller has seen it and has nothing left to do. */
async function createAndSettle(
  reports: ReturnType<typeof reportsApi>,
  r: Record<string, any>,
): Promise<void> {
  const made = (await reports.create(r)) as {
    metadata: { namespace: string; name: string; resourceVersion: string };
  };
  await observed(ctl, `${made.metadata.namespace}/${made.metadata.name}`, made.metadata.resourceVersion);
}

test("policies - a report matching the repository pattern and severity is queued under that policy; one outside it gets nothing", async () => {
  const ns = NS["pol-match"]!;
  const reports = namespaceWith(ns);
  await createPolicy(ns, "debian-high", { selector: { repository: "library/deb.*", minSeverity: "HIGH" } });
  await createPolicy(ns, "debian-critical", {
    selector: { repository: "library/debian", minSeverity: "CRITICAL" },
  });
  await reports.create(makeReport({ name: "in", namespace: ns }));
  await createAndSettle(
    reports,
    makeReport({ name: "other-repo", namespace: ns, repository: "library/alpine" }),
  );
  const pj = await waitFor(
    "the matching report's PatchJob Queued",
    async () =>
      (await listPatchJobs(env.kubeConfig(), ns)).find(
        (p) => p.metadata.name === "in" && p.status?.phase === "Queued",
      ),
    30_000,
  );
  assert.deepEqual(
    pj.spec.policyRef,
    { name: "debian-high", namespace: ns },
    "the CRITICAL policy does not match (fixable HIGH)",
  );
  await idle(ctl);
  assert.deepEqual(
    (await listPatchJobs(env.kubeConfig(), ns)).map((p) => p.metadata.name),
    ["in"],
    "nothing for the report outside the pattern",
  );
  assert.deepEqual(
    (await streamMessages(env.natsURL, ns)).map((m) => m.name),
    ["in"],
  );
  const status = await waitFor(
    "the policy's status",
    async () => {
      const s = (await getPolicy(ns, "debian-high")).status;
      return s?.matchedReports === 1 && s.patchJobsCreated === 1 ? s : undefined;
    },
    15_000,
  );
  assert.equal(status.conditions?.find((c) => c.type === "Ready")?.status, "True");
});

test("policies - no policy at all: nothing is patched", async () => {
  const ns = NS["pol-none"]!;
  const reports = namespaceWith(ns);
  await createAndSettle(reports, makeReport({ name: "orphan", namespace: ns }));
  assert.deepEqual(await listPatchJobs(env.kubeConfig(), ns), []);
  assert.deepEqual(await streamMessages(env.natsURL, ns), []);
});

test("policies - a DryRun policy: PatchJobs Planned with the updates and CVEs, no message for the worker", async () => {
  const ns = NS["pol-dry"]!;
  const reports = namespaceWith(ns);
  await createPolicy(ns, "plan-only", { mode: "DryRun" });
  await reports.create(makeReport({ name: "dry", namespace: ns }));
  const pj = await waitFor(
    "a Planned PatchJob",
    async () => (await listPatchJobs(env.kubeConfig(), ns)).find((p) => p.status?.phase === "Planned"),
    30_000,
  );
  assert.equal(pj.spec.dryRun, true);
  assert.deepEqual(
    pj.status?.plannedUpdates?.map((u) => [u.name, u.fixedVersion, u.vulnerabilityIDs]),
    [
      ["liblzma5", "5.4.1-1+deb12u2", ["CVE-2025-31115"]],
      ["libpcre2-8-0", "10.42-1+deb12u2", ["CVE-2022-41409", "CVE-2025-58050"]],
      ["perl-base", "5.36.0-7+deb12u4", ["CVE-2024-56406"]],
    ],
  );
  assert.match(pj.status!.message!, /would update 3 packages \(liblzma5 .* -> 5\.4\.1-1\+deb12u2/);
  await idle(ctl);
  assert.deepEqual(await streamMessages(env.natsURL, ns), [], "no message: nothing runs");

  // The policy switched to Auto: the same PatchJob is queued for real (generation 2).
  const p = await getPolicy(ns, "plan-only");
  await api.replaceNamespacedCustomObject({
    ...G,
    namespace: ns,
    name: "plan-only",
    body: { ...p, spec: { ...p.spec, mode: "Auto" } },
  });
  const queued = await waitFor(
    "the PatchJob queued after the switch",
    async () => (await listPatchJobs(env.kubeConfig(), ns)).find((x) => x.status?.phase === "Queued"),
    30_000,
  );
  assert.equal(queued.metadata.generation, 2);
  assert.equal(queued.spec.dryRun, undefined);
  assert.equal(queued.status?.plannedUpdates, undefined);
  assert.deepEqual(
    (await streamMessages(env.natsURL, ns)).map((m) => [m.name, m.generation]),
    [["dry", 2]],
  );
});

test("policies - a Scheduled policy patches at its cron time, not on scans in between", async () => {
  const ns = NS["pol-sched"]!;
  const reports = namespaceWith(ns);
  // Move the controller's clock to 5 s before a minute boundary, and schedule that minute.
  const now = Date.now();
  offsetMs = 55_000 - (now % 60_000);
  if (offsetMs < 0) offsetMs += 60_000;
  const at = new Date(now + offsetMs + 5_000);
  const cron = `${at.getUTCMinutes()},${(at.getUTCMinutes() + 1) % 60} ${at.getUTCHours()} * * *`;
  await createPolicy(ns, "nightly", { mode: "Scheduled", schedule: { cron, timeZone: "UTC" } });
  await createAndSettle(reports, makeReport({ name: "sched", namespace: ns }));
  assert.deepEqual(await listPatchJobs(env.kubeConfig(), ns), [], "nothing before the scheduled time");
  const pj = await waitFor(
    "the PatchJob queued at the scheduled minute",
    async () => (await listPatchJobs(env.kubeConfig(), ns)).find((p) => p.status?.phase === "Queued"),
    30_000,
  );
  const queuedAt = Date.parse(pj.status!.queuedTime!) + offsetMs;
  assert.ok(queuedAt >= at.getTime() - 5_000, "not before the cron time (controller clock)");
  const policy = await getPolicy(ns, "nightly");
  assert.ok(policy.status?.lastScheduleTime, "the run is recorded");

  // A rescan with new findings between runs: nothing changes until the next run.
  const r = await reports.get(ns, "sched");
  r.report.results[0].vulnerabilities[0].fixedVersions = ["5.4.1-1+deb12u7"];
  const rv = ((await reports.replace(r)) as { metadata: { resourceVersion: string } }).metadata
    .resourceVersion;
  await observed(ctl, `${ns}/sched`, rv);
  const between = (await listPatchJobs(env.kubeConfig(), ns))[0]!;
  assert.equal(between.metadata.generation, 1, "no change between runs");
  assert.equal((await streamMessages(env.natsURL, ns)).length, 1);

  // The next minute of the schedule comes (the clock moves on): the change is patched.
  offsetMs += 60_000;
  const again = await waitFor(
    "generation 2 queued at the next run",
    async () => {
      const x = (await listPatchJobs(env.kubeConfig(), ns))[0];
      return x?.metadata.generation === 2 && x.status?.phase === "Queued" ? x : undefined;
    },
    30_000,
  );
  assert.equal(again.spec.updates?.find((u) => u.name === "liblzma5")?.fixedVersion, "5.4.1-1+deb12u7");
  assert.deepEqual(
    (await streamMessages(env.natsURL, ns)).map((m) => m.generation),
    [1, 2],
  );
  offsetMs = 0;
});

test("policies - an invalid regular expression is rejected by the apiserver with the reason; an impossible cron is reported Ready=False", async () => {
  const ns = NS["pol-invalid"]!;
  await assert.rejects(
    () => createPolicy(ns, "bad-regex", { selector: { repository: "library/(" } }),
    (err: { code?: number; body?: string }) =>
      err.code === 422 &&
      /missing closing \)/.test(String(err.body)) &&
      /spec\.selector\.repository/.test(String(err.body)),
  );
  await assert.rejects(
    () => createPolicy(ns, "no-schedule", { mode: "Scheduled" }),
    (err: { code?: number; body?: string }) =>
      err.code === 422 && /spec\.schedule is required/.test(String(err.body)),
  );
  // Five fields, so the CRD's pattern admits it; minute 61 does not exist: the controller says so.
  await createPolicy(ns, "bad-cron", { mode: "Scheduled", schedule: { cron: "61 * * * *" } });
  const cond = await waitFor(
    "Ready=False on the policy",
    async () =>
      (await getPolicy(ns, "bad-cron")).status?.conditions?.find(
        (c) => c.type === "Ready" && c.status === "False",
      ),
    15_000,
  );
  assert.equal(cond.reason, "InvalidSpec");
  assert.match(cond.message, /spec\.schedule\.cron: minute: 61 is out of range 0-59/);
  // And a Warning event on the policy, for `kubectl describe ppol`.
  const ev = await waitFor(
    "the InvalidSpec event",
    async () =>
      (await env.kubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: ns })).items.find(
        (e) =>
          e.involvedObject.kind === "PatchPolicy" &&
          e.involvedObject.name === "bad-cron" &&
          e.reason === "InvalidSpec",
      ),
    15_000,
  );
  assert.equal(ev.type, "Warning");
  assert.match(ev.message ?? "", /minute: 61/);
});

test("policies - maxInFlight holds the rest Pending with the reason; a global policy in the controller's namespace applies everywhere", async () => {
  const ns = NS["pol-limit"]!;
  const reports = namespaceWith(ns);
  await createPolicy(CTL_NS, "everywhere-limited", {
    allNamespaces: true,
    selector: { tag: "limit-.*" },
    limits: { maxInFlight: 1 },
  });
  for (let i = 0; i < 3; i++)
    await reports.create(makeReport({ name: `l${i}`, namespace: ns, tag: `limit-${i}` }));
  let seen = "";
  const pjs = await waitFor(
    "1 Queued, 2 Pending (PolicyLimit)",
    async () => {
      const all = await listPatchJobs(env.kubeConfig(), ns);
      seen = all.map((p) => `${p.metadata.name} ${p.status?.phase}/${p.status?.reason}`).join(", ");
      const q = all.filter((p) => p.status?.phase === "Queued");
      const w = all.filter((p) => p.status?.phase === "Pending" && p.status.reason === "PolicyLimit");
      return q.length === 1 && w.length === 2 ? all : undefined;
    },
    30_000,
  ).catch((e: unknown) =>
    Promise.reject(new Error(`${(e as Error).message}; last seen: ${seen || "no PatchJobs"}`)),
  );
  for (const p of pjs) assert.deepEqual(p.spec.policyRef, { name: "everywhere-limited", namespace: CTL_NS });
  assert.match(
    pjs.find((p) => p.status?.phase === "Pending")!.status!.message!,
    /1 of at most 1 patches in flight/,
  );
  // The two waiting keys are looked at again (every 3 s) and still held: shown by the
  // reconcile counter moving, not by a sleep.
  const requeues = async () =>
    metricValue(
      await ctl.registry.metrics(),
      "vuln_patcher_reconcile_total",
      'kind="report",result="requeue_after"',
    );
  const r0 = await requeues();
  await waitFor("two more passes over the held PatchJobs", async () => (await requeues()) >= r0 + 2, 20_000);
  await idle(ctl);
  assert.equal((await streamMessages(env.natsURL, ns)).length, 1, "one message while the limit holds");
});

test("policies - outside the policy's time window a PatchJob waits Pending (OutsideWindow)", async () => {
  const ns = NS["pol-window"]!;
  const reports = namespaceWith(ns);
  const h = (new Date().getUTCHours() + 2) % 24;
  const pad = (n: number) => String(n).padStart(2, "0");
  await createPolicy(ns, "later", {
    limits: { window: { start: `${pad(h)}:00`, end: `${pad((h + 1) % 24)}:00` } },
  });
  await reports.create(makeReport({ name: "w", namespace: ns }));
  const pj = await waitFor(
    "Pending outside the window",
    async () => (await listPatchJobs(env.kubeConfig(), ns)).find((p) => p.status?.reason === "OutsideWindow"),
    30_000,
  );
  assert.equal(pj.status?.phase, "Pending");
  assert.deepEqual(await streamMessages(env.natsURL, ns), []);
});

test("policies - a scan of an image vuln-patcher pushed under a policy's own suffix is not patched again", async () => {
  const ns = NS["pol-output"]!;
  const reports = namespaceWith(ns);
  await createPolicy(ns, "fixed", { target: { tagSuffix: "-fixed" } });
  await reports.create(makeReport({ name: "src", namespace: ns, tag: "t1" }));
  const pj = await waitFor(
    "the PatchJob queued",
    async () => (await listPatchJobs(env.kubeConfig(), ns)).find((p) => p.status?.phase === "Queued"),
    30_000,
  );
  assert.deepEqual(pj.spec.target, { tagSuffix: "-fixed" });
  // What a worker records when it has pushed (written here as the worker would).
  await patchJobClient(env.kubeConfig()).updateStatus(pj, {
    ...pj.status,
    phase: "Succeeded",
    reason: "Patched",
    observedGeneration: pj.metadata.generation,
    patchedImage: { reference: "127.0.0.1:5000/library/debian:t1-fixed", digest: "sha256:" + "f".repeat(64) },
  });
  await waitFor("the controller to see what was pushed", () =>
    ctl.patchJobStore()?.get(`${ns}/src`)?.status?.patchedImage?.reference?.endsWith(":t1-fixed"),
  );
  // sbomscanner scans the pushed image: its tag does not end in the controller's suffix.
  await createAndSettle(reports, makeReport({ name: "out", namespace: ns, tag: "t1-fixed" }));
  assert.deepEqual(
    (await listPatchJobs(env.kubeConfig(), ns)).map((p) => p.metadata.name),
    ["src"],
    "no PatchJob for our own output",
  );
});
