// The controller against the real apiserver (with the sbomscanner test CRD) and real
// NATS JetStream. Nothing consumes the stream here, so its message count is exactly
// what the controller published; "nothing happened" is the controller idle after it saw
// the change, then the counts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { listPatchJobs, reportsApi } from "../../src/devenv/kube.ts";
import { installPolicy, namespaces, testEnv } from "../support/shared.ts";
import { idle, observed } from "../support/controller.ts";
import { messagesIn, streamMessages } from "../../test/support/stream.ts";
import { digestOf, makeReport } from "../../test/fixtures/make-report.ts";
import { patchJobNameForIndex } from "../../src/decide/index.ts";
import { markSucceeded, type PatchJob } from "../../src/api/index.ts";
import { patchJobClient } from "../../src/kube/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController, type RunningController } from "../../src/controller/manager.ts";
import type { NatsConnection } from "@nats-io/transport-node";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let NS: Record<string, string>;

before(async () => {
  env = await testEnv();
  NS = await namespaces(
    env,
    "ctl-home",
    "ctl-basic",
    "ctl-rescan",
    "ctl-change",
    "ctl-skip",
    "ctl-deleted",
    "ctl-nats-down",
    "ctl-multiarch",
  );
  // The chart's default policy, global from the controller's own namespace.
  await installPolicy(env, NS["ctl-home"]!, { global: true });
  nc = await connectNats({ url: env.natsURL, name: "controller-test" });
  ctl = await startController({
    kc: env.kubeConfig(),
    nc,
    namespaces: Object.values(NS),
    policyNamespace: NS["ctl-home"]!,
    resyncMs: 20_000,
    sweepIntervalMs: 2_000,
    staleQueuedMs: 60_000,
  });
});

after(async () => {
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

async function allQueued(ns: string, n: number): Promise<PatchJob[]> {
  return waitFor(
    `${n} Queued PatchJobs in ${ns}`,
    async () => {
      const pjs = await listPatchJobs(env.kubeConfig(), ns);
      return pjs.length === n &&
        pjs.every(
          (p) => p.status?.phase === "Queued" && p.status.observedGeneration === p.metadata.generation,
        )
        ? pjs
        : undefined;
    },
    60_000,
  );
}

test("controller - N reports become N PatchJobs with the right spec and exactly N messages", async () => {
  const ns = NS["ctl-basic"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  for (let i = 0; i < 5; i++)
    await reports.create(makeReport({ name: `report-${i}`, namespace: ns, tag: `v${i}` }));
  const pjs = await allQueued(ns, 5);
  const pj = pjs.find((p) => p.metadata.name === "report-3")!;
  assert.equal(pj.spec.source, "report");
  assert.equal(pj.spec.image?.tag, "v3");
  assert.equal(pj.spec.reportRef?.name, "report-3");
  assert.deepEqual(
    pj.spec.updates?.map((u) => u.name),
    ["liblzma5", "libpcre2-8-0", "perl-base"],
  );
  assert.match(pj.spec.findingsHash!, /^sha256:/);
  assert.deepEqual(pj.status?.vulnerabilities?.before, { total: 6, fixable: 4 });
  assert.equal(pj.status?.conditions?.find((c) => c.type === "Queued")?.status, "True");
  await idle(ctl);
  assert.equal(await messagesIn(env.natsURL, ns), 5);
});

test("controller - a rescan that changes only labels and resourceVersion publishes nothing and changes no PatchJob", async () => {
  const ns = NS["ctl-rescan"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "r", namespace: ns }));
  const [before] = await allQueued(ns, 1);
  let rv = "";
  for (let i = 0; i < 3; i++) {
    const cur = await reports.get(ns, "r");
    cur.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = `rescan-${i}`;
    cur.report.summary.low = 10 + i;
    rv = (await reports.replace(cur)).metadata.resourceVersion;
  }
  await observed(ctl, `${ns}/r`, rv);
  const [after] = await listPatchJobs(kc, ns);
  assert.equal(after!.metadata.generation, before!.metadata.generation);
  assert.equal(
    after!.metadata.resourceVersion,
    before!.metadata.resourceVersion,
    "the PatchJob was not written at all",
  );
  assert.equal(await messagesIn(env.natsURL, ns), 1);
});

test("controller - a change in fixable findings moves the generation and publishes exactly one new message", async () => {
  const ns = NS["ctl-change"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "r", namespace: ns }));
  const [first] = await allQueued(ns, 1);
  const cur = await reports.get(ns, "r");
  cur.report.results[0].vulnerabilities[0].fixedVersions = ["5.4.1-1+deb12u3"];
  await reports.replace(cur);
  const moved = await waitFor("the generation to move and be queued", async () => {
    const [pj] = await listPatchJobs(kc, ns);
    return pj &&
      pj.metadata.generation! > first!.metadata.generation! &&
      pj.status?.phase === "Queued" &&
      pj.status.observedGeneration === pj.metadata.generation
      ? pj
      : undefined;
  });
  assert.equal(moved.spec.updates?.find((u) => u.name === "liblzma5")?.fixedVersion, "5.4.1-1+deb12u3");
  await idle(ctl);
  assert.equal(await messagesIn(env.natsURL, ns), 2);
});

test("controller - a report for our own patched tag, or with nothing fixable, makes no PatchJob", async () => {
  const ns = NS["ctl-skip"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "patched", namespace: ns, tag: "bookworm-vuln-patched" }));
  const nothing = makeReport({ name: "nothing", namespace: ns });
  for (const v of nothing.report.results[0].vulnerabilities) v.fixedVersions = [];
  await reports.create(nothing);
  await reports.create(makeReport({ name: "control", namespace: ns }));
  await allQueued(ns, 1);
  for (const name of ["patched", "nothing", "control"]) await observed(ctl, `${ns}/${name}`, "1");
  assert.deepEqual(
    (await listPatchJobs(kc, ns)).map((p) => p.metadata.name),
    ["control"],
  );
  assert.equal(await messagesIn(env.natsURL, ns), 1);
});

test("controller - a deleted report: a PatchJob no worker started ends Cancelled (ReportDeleted); one that ran stays as history", async () => {
  const ns = NS["ctl-deleted"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "gone", namespace: ns, tag: "t1" }));
  await reports.create(makeReport({ name: "ran", namespace: ns, tag: "t2" }));
  await allQueued(ns, 2);
  // A worker patched "ran" (its status written as a worker writes it).
  const client = patchJobClient(kc);
  const ran = (await client.get(ns, "ran"))!;
  await client.updateStatus(ran, {
    ...markSucceeded(ran, {
      patchedImage: {
        reference: "127.0.0.1:5000/library/debian:t2-patched",
        digest: "sha256:" + "e".repeat(64),
      },
    }),
  });
  await reports.delete(ns, "gone");
  await reports.delete(ns, "ran");
  const [gone, kept] = await waitFor("both PatchJobs to say their report is gone", async () => {
    const pjs = await listPatchJobs(kc, ns);
    const g = pjs.find((p) => p.metadata.name === "gone");
    const r = pjs.find((p) => p.metadata.name === "ran");
    const goneFlag = (p?: PatchJob) =>
      p?.status?.conditions?.some((c) => c.type === "SourceAvailable" && c.status === "False");
    return goneFlag(g) && goneFlag(r) ? [g!, r!] : undefined;
  });
  assert.equal(gone.status?.phase, "Cancelled");
  assert.equal(gone.status?.reason, "ReportDeleted");
  assert.match(gone.status!.message!, /deleted before a worker started/);
  assert.equal(kept.status?.phase, "Succeeded", "the history is kept");
  assert.equal(kept.status?.patchedImage?.reference, "127.0.0.1:5000/library/debian:t2-patched");
});

test("controller - NATS down while reports arrive: every PatchJob ends Queued once NATS is back, none lost, none published twice", async () => {
  const ns = NS["ctl-nats-down"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  await env.nats!.component.stop();
  try {
    for (let i = 0; i < 6; i++)
      await reports.create(makeReport({ name: `r${i}`, namespace: ns, tag: `t${i}` }));
    await waitFor(
      "PatchJobs marked Queued=False (PublishFailed)",
      async () => {
        const pjs = await listPatchJobs(kc, ns);
        return pjs.length === 6 &&
          pjs.every((p) =>
            p.status?.conditions?.some(
              (c) => c.type === "Queued" && c.status === "False" && c.reason === "PublishFailed",
            ),
          )
          ? pjs
          : undefined;
      },
      90_000,
    );
  } finally {
    await env.nats!.component.start();
  }
  await allQueued(ns, 6);
  await idle(ctl);
  assert.equal(await messagesIn(env.natsURL, ns), 6);
});

test("controller - the platform reports of one index: one index PatchJob queued with every platform, the platforms Grouped, one message; a changed platform re-queues the index", async () => {
  const ns = NS["ctl-multiarch"]!;
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  for (const arch of ["amd64", "arm64"])
    await reports.create(
      makeReport({
        name: `multi-${arch}`,
        namespace: ns,
        tag: "multi",
        platform: `linux/${arch}`,
        indexSeed: "idx-1",
      }),
    );
  const group = patchJobNameForIndex({
    registryURI: "127.0.0.1:5000",
    repository: "library/debian",
    tag: "multi",
  });
  const all = await waitFor(
    "the index PatchJob Queued with both platforms, both platforms Grouped",
    async () => {
      const pjs = await listPatchJobs(kc, ns);
      const idx = pjs.find((p) => p.metadata.name === group);
      const members = pjs.filter((p) => p.metadata.name.startsWith("multi-"));
      return idx?.status?.phase === "Queued" &&
        idx.spec.platforms?.length === 2 &&
        idx.status.vulnerabilities?.before?.total === 12 &&
        members.length === 2 &&
        members.every((m) => m.status?.reason === "Grouped" && m.status.group === group)
        ? { idx, members }
        : undefined;
    },
    60_000,
  );
  assert.equal(all.idx.spec.image?.platform, "all");
  assert.equal(all.idx.spec.image?.digest, digestOf("idx-1"));
  assert.deepEqual(
    all.idx.status?.vulnerabilities?.before,
    { total: 12, fixable: 8 },
    "the platforms' counts summed",
  );
  assert.equal(all.idx.metadata.labels?.["vulnpatcher.io/index"], "true");
  for (const m of all.members) assert.equal(m.metadata.labels?.["vulnpatcher.io/index-group"], group);
  await idle(ctl);
  const msgs = await streamMessages(env.natsURL, ns);
  assert.deepEqual(
    msgs.map((m) => [m.name, m.generation]),
    [[group, 1]],
    "only the index PatchJob is queued, once",
  );

  // arm64's findings change: its PatchJob moves on, and the index is queued again (generation 2).
  const arm = await reports.get(ns, "multi-arm64");
  arm.report.results[0].vulnerabilities[0].fixedVersions = ["5.4.1-1+deb12u9"];
  await reports.replace(arm);
  await waitFor(
    "the index PatchJob at generation 2, Queued",
    async () => {
      const idx = (await listPatchJobs(kc, ns)).find((p) => p.metadata.name === group);
      return idx?.metadata.generation === 2 &&
        idx.status?.phase === "Queued" &&
        idx.status.observedGeneration === 2
        ? idx
        : undefined;
    },
    60_000,
  );
  await idle(ctl);
  assert.deepEqual(
    (await streamMessages(env.natsURL, ns)).map((m) => [m.name, m.generation]),
    [
      [group, 1],
      [group, 2],
    ],
  );
});
