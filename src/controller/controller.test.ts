// The controller against the real apiserver (with the sbomscanner test CRD) and real
// NATS JetStream. Nothing consumes the stream here, so its message count is exactly
// what the controller published.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setup, type Env } from "../../test/env/index.ts";
import { installAllCRDs } from "../../test/env/crds.ts";
import { waitFor } from "../../test/env/wait.ts";
import { createNamespace, listPatchJobs, reportsApi } from "../../test/env/kube.ts";
import { messagesIn, streamMessages } from "../../test/env/stream.ts";
import { digestOf, makeReport } from "../../test/fixtures/make-report.ts";
import { patchJobNameForIndex } from "../api/group.ts";
import { connectNats } from "../queue/nats.ts";
import { startController, type RunningController } from "./manager.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import type { PatchJob } from "../api/patchjob.ts";
import { setTimeout as sleep } from "node:timers/promises";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;

before(async () => {
  env = await setup({ registry: false });
  await installAllCRDs(env.kubeConfig());
  nc = await connectNats({ url: env.natsURL, name: "controller-test" });
  ctl = await startController({
    kc: env.kubeConfig(),
    nc,
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
  const ns = "ctl-basic";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
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
  await sleep(1000);
  assert.equal(await messagesIn(env.natsURL, ns), 5);
});

test("controller - a rescan that changes only labels and resourceVersion publishes nothing and changes no PatchJob", async () => {
  const ns = "ctl-rescan";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "r", namespace: ns }));
  const [before] = await allQueued(ns, 1);
  for (let i = 0; i < 3; i++) {
    const cur = await reports.get(ns, "r");
    cur.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = `rescan-${i}`;
    cur.report.summary.low = 10 + i;
    await reports.replace(cur);
  }
  await sleep(3000);
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
  const ns = "ctl-change";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
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
  await sleep(1000);
  assert.equal(await messagesIn(env.natsURL, ns), 2);
});

test("controller - a report for our own patched tag, or with nothing fixable, makes no PatchJob", async () => {
  const ns = "ctl-skip";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "patched", namespace: ns, tag: "bookworm-vuln-patched" }));
  const nothing = makeReport({ name: "nothing", namespace: ns });
  for (const v of nothing.report.results[0].vulnerabilities) v.fixedVersions = [];
  await reports.create(nothing);
  await reports.create(makeReport({ name: "control", namespace: ns }));
  await allQueued(ns, 1);
  await sleep(2000);
  assert.deepEqual(
    (await listPatchJobs(kc, ns)).map((p) => p.metadata.name),
    ["control"],
  );
  assert.equal(await messagesIn(env.natsURL, ns), 1);
});

test("controller - a deleted report leaves its PatchJob as history, with a condition saying so", async () => {
  const ns = "ctl-deleted";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
  const reports = reportsApi(kc);
  await reports.create(makeReport({ name: "gone", namespace: ns }));
  await allQueued(ns, 1);
  await reports.delete(ns, "gone");
  const pj = await waitFor("SourceAvailable=False", async () => {
    const [p] = await listPatchJobs(kc, ns);
    return p?.status?.conditions?.find((c) => c.type === "SourceAvailable" && c.status === "False")
      ? p
      : undefined;
  });
  assert.equal(pj.status?.phase, "Queued", "the phase is left as it was");
});

test("controller - NATS down while reports arrive: every PatchJob ends Queued once NATS is back, none lost, none published twice", async () => {
  const ns = "ctl-nats-down";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
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
  await sleep(2000);
  assert.equal(await messagesIn(env.natsURL, ns), 6);
});

test("controller - the platform reports of one index: one index PatchJob queued with every platform, the platforms Grouped, one message; a changed platform re-queues the index", async () => {
  const ns = "ctl-multiarch";
  const kc = env.kubeConfig();
  await createNamespace(kc, ns);
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
  await sleep(1500);
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
  await sleep(1500);
  assert.deepEqual(
    (await streamMessages(env.natsURL, ns)).map((m) => [m.name, m.generation]),
    [
      [group, 1],
      [group, 2],
    ],
  );
});
