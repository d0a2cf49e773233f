// Rollout on the real apiserver with the controller (kube-controller-manager runs the
// Deployments; there is no node, so only replicas: 0 become ready here: Pods that run and
// a rollback are test/slow/cluster.test.ts's). DryRun: the PatchJob's status lists the
// workloads of its namespace that run the source image, Planned or Skipped with why, and
// nothing is changed. Auto: each selected workload is set to the patched image by digest,
// one at a time, and recorded Updated; another namespace's workload is never touched.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AppsV1Api, BatchV1Api, CustomObjectsApi, type V1Deployment } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { namespaces, testEnv } from "../support/shared.ts";
import { getPatchJob } from "../support/patchjobs.ts";
import { digestOf, makeReport } from "../fixtures/make-report.ts";
import { defaultPolicy, markSucceeded, POLICY_PLURAL } from "../../src/api/index.ts";
import { patchJobClient } from "../../src/kube/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController, type RunningController } from "../../src/controller/manager.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let NS: string;
let OTHER: string;
let AUTO: string;

before(async () => {
  env = await testEnv();
  const made = await namespaces(env, "rollout", "rollout-other", "rollout-auto");
  NS = made.rollout!;
  OTHER = made["rollout-other"]!;
  AUTO = made["rollout-auto"]!;
  nc = await connectNats({ url: env.natsURL, name: "rollout-test" });
  ctl = await startController({
    kc: env.kubeConfig(),
    nc,
    namespaces: [NS, OTHER, AUTO],
    policyNamespace: NS,
  });
});

after(async () => {
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

const deployment = (
  name: string,
  image: string,
  meta: Partial<V1Deployment["metadata"]> = {},
  replicas = 1,
): V1Deployment => ({
  metadata: { name, ...meta },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image }] } },
  },
});

test("rollout - DryRun: the workloads running the source image, Planned or Skipped with why; nothing changed; another namespace untouched", async () => {
  const kc = env.kubeConfig();
  const api = kc.makeApiClient(CustomObjectsApi);
  const apps = kc.makeApiClient(AppsV1Api);
  const p = defaultPolicy(NS);
  await api.createNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: POLICY_PLURAL,
    namespace: NS,
    body: { ...p, spec: { ...p.spec, rollout: { mode: "DryRun" } } },
  });
  const report = makeReport({ name: "web", namespace: NS, tag: "1.0" });
  const im = report.imageMetadata as { registryURI: string; repository: string; tag: string };
  const image = `${im.registryURI}/${im.repository}:${im.tag}`;
  await apps.createNamespacedDeployment({ namespace: NS, body: deployment("web", image) });
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: deployment("pinned", image, { annotations: { "vulnpatcher.io/rollout": "false" } }),
  });
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: deployment("argo", image, { labels: { "argocd.argoproj.io/instance": "shop" } }),
  });
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: deployment("unrelated", `${im.registryURI}/other/app:1`),
  });
  await apps.createNamespacedDeployment({ namespace: OTHER, body: deployment("web", image) });
  // Pulled through a mirror's host name: only sbomscanner's WorkloadScanReport says it is
  // the report's image (its Registry object "origin" is the report's registry).
  const aliased = await apps.createNamespacedDeployment({
    namespace: NS,
    body: deployment("aliased", `mirror.invalid/${im.repository}:${im.tag}`),
  });
  await api.createNamespacedCustomObject({
    group: "sbomscanner.kubewarden.io",
    version: "v1alpha1",
    plural: "registries",
    namespace: NS,
    body: {
      apiVersion: "sbomscanner.kubewarden.io/v1alpha1",
      kind: "Registry",
      metadata: { name: "origin" },
      spec: { uri: im.registryURI },
    },
  });
  await api.createNamespacedCustomObject({
    group: "storage.sbomscanner.kubewarden.io",
    version: "v1alpha1",
    plural: "workloadscanreports",
    namespace: NS,
    body: {
      apiVersion: "storage.sbomscanner.kubewarden.io/v1alpha1",
      kind: "WorkloadScanReport",
      metadata: {
        name: "aliased",
        ownerReferences: [
          {
            apiVersion: "apps/v1",
            kind: "Deployment",
            name: "aliased",
            uid: aliased.metadata!.uid!,
            controller: true,
          },
        ],
      },
      spec: {
        containers: [
          {
            name: "app",
            imageRef: { registry: "origin", namespace: NS, repository: im.repository, tag: im.tag },
          },
        ],
      },
    },
  });
  // A spec change moves a Deployment's generation; its status (its controller's) does not.
  const versions = async () =>
    Object.fromEntries(
      [
        ...(await apps.listNamespacedDeployment({ namespace: NS })).items,
        ...(await apps.listNamespacedDeployment({ namespace: OTHER })).items,
      ].map((d) => [`${d.metadata!.namespace}/${d.metadata!.name}`, d.metadata!.generation]),
    );
  await reportsApi(kc).create(report);
  const queued = await waitFor("the PatchJob Queued", async () => {
    const pj = await getPatchJob(kc, NS, "web").catch(() => undefined);
    return pj?.status?.phase === "Queued" ? pj : undefined;
  });
  const before = await versions();
  await patchJobClient(kc).updateStatus(
    queued,
    markSucceeded(queued, {
      patchedImage: { reference: `${image}-patched`, digest: digestOf("web-patched") },
      fixedCVEs: [],
    }),
  );
  const pj = await waitFor("the rollout plan", async () => {
    const p = await getPatchJob(kc, NS, "web");
    return p.status?.rollout ? p : undefined;
  });
  assert.equal(pj.status!.rollout!.mode, "DryRun");
  assert.equal(pj.status!.rollout!.observedGeneration, pj.metadata.generation);
  assert.deepEqual(
    pj.status!.rollout!.workloads.map((w) => [`${w.namespace}/${w.kind}/${w.name}`, w.state, w.reason ?? ""]),
    [
      [`${NS}/Deployment/aliased`, "Planned", ""],
      [`${NS}/Deployment/argo`, "Skipped", "GitOpsManaged"],
      [`${NS}/Deployment/pinned`, "Skipped", "OptedOut"],
      [`${NS}/Deployment/web`, "Planned", ""],
    ],
  );
  assert.deepEqual(await versions(), before, "DryRun: no Deployment changed, here or in the other namespace");
});

test("rollout - Auto: a Deployment and a CronJob set to the patched image by digest, one at a time, Updated; opted out and Argo CD skipped; the other namespace untouched", async () => {
  const kc = env.kubeConfig();
  const api = kc.makeApiClient(CustomObjectsApi);
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const p = defaultPolicy(AUTO);
  await api.createNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: POLICY_PLURAL,
    namespace: AUTO,
    body: { ...p, spec: { ...p.spec, rollout: { mode: "Auto", timeoutSeconds: 120 } } },
  });
  const report = makeReport({ name: "api", namespace: AUTO, tag: "2.0" });
  const im = report.imageMetadata as { registryURI: string; repository: string; tag: string };
  const image = `${im.registryURI}/${im.repository}:${im.tag}`;
  // No node here: replicas 0 is a Deployment its controller can finish.
  await apps.createNamespacedDeployment({ namespace: AUTO, body: deployment("api", image, {}, 0) });
  await apps.createNamespacedDeployment({
    namespace: AUTO,
    body: deployment("pinned", image, { annotations: { "vulnpatcher.io/rollout": "false" } }, 0),
  });
  await apps.createNamespacedDeployment({
    namespace: AUTO,
    body: deployment("argo", image, { labels: { "argocd.argoproj.io/instance": "shop" } }, 0),
  });
  await batch.createNamespacedCronJob({
    namespace: AUTO,
    body: {
      metadata: { name: "nightly" },
      spec: {
        schedule: "0 3 * * *",
        jobTemplate: {
          spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "job", image }] } } },
        },
      },
    },
  });
  await apps.createNamespacedDeployment({ namespace: OTHER, body: deployment("api", image, {}, 0) });
  // Its status moves (the Deployment controller's), its generation only with a spec change.
  const otherBefore = (await apps.readNamespacedDeployment({ namespace: OTHER, name: "api" })).metadata!
    .generation;
  await reportsApi(kc).create(report);
  const queued = await waitFor("the PatchJob Queued", async () => {
    const pj = await getPatchJob(kc, AUTO, "api").catch(() => undefined);
    return pj?.status?.phase === "Queued" ? pj : undefined;
  });
  const digest = digestOf("api-patched");
  const t0 = Date.now();
  await patchJobClient(kc).updateStatus(
    queued,
    markSucceeded(queued, { patchedImage: { reference: `${image}-patched`, digest }, fixedCVEs: [] }),
  );
  const to = `${image}-patched@${digest}`;
  const pj = await waitFor(
    "both workloads Updated",
    async () => {
      const x = await getPatchJob(kc, AUTO, "api");
      return x.status?.rollout?.updated === 2 ? x : undefined;
    },
    60_000,
    200,
  );
  const ms = Date.now() - t0;
  assert.deepEqual(
    pj.status!.rollout!.workloads.map((w) => [`${w.kind}/${w.name}`, w.state, w.reason ?? "", w.to ?? ""]),
    [
      ["CronJob/nightly", "Updated", "", to],
      ["Deployment/api", "Updated", "", to],
      ["Deployment/argo", "Skipped", "GitOpsManaged", ""],
      ["Deployment/pinned", "Skipped", "OptedOut", ""],
    ],
  );
  const [cron, dep] = pj.status!.rollout!.workloads;
  assert.ok(
    cron!.finishedAt! <= dep!.startedAt!,
    "one workload at a time: the Deployment started after the CronJob was done",
  );
  const d = await apps.readNamespacedDeployment({ namespace: AUTO, name: "api" });
  assert.equal(d.spec!.template.spec!.containers[0]!.image, to, "by digest, never a tag");
  const record = JSON.parse(d.metadata!.annotations!["vulnpatcher.io/rollout-record"]!);
  assert.deepEqual(record.containers, { app: { from: image, to } }, "the previous image, to undo it");
  const c = await batch.readNamespacedCronJob({ namespace: AUTO, name: "nightly" });
  assert.equal(c.spec!.jobTemplate.spec!.template.spec!.containers[0]!.image, to);
  for (const name of ["pinned", "argo"]) {
    const x = await apps.readNamespacedDeployment({ namespace: AUTO, name });
    assert.equal(x.spec!.template.spec!.containers[0]!.image, image, `${name} untouched`);
  }
  const other = await apps.readNamespacedDeployment({ namespace: OTHER, name: "api" });
  assert.equal(other.metadata!.generation, otherBefore, "the other namespace's Deployment untouched");
  assert.equal(other.spec!.template.spec!.containers[0]!.image, image);
  assert.equal(other.metadata!.annotations?.["vulnpatcher.io/rollout-record"], undefined);
  const events = await env
    .kubeConfig()
    .makeApiClient((await import("@kubernetes/client-node")).CoreV1Api)
    .listNamespacedEvent({ namespace: AUTO, fieldSelector: "involvedObject.name=api,reason=RolloutStarted" });
  assert.ok(
    events.items.some((e) => e.involvedObject.kind === "Deployment"),
    "an Event on the Deployment itself",
  );
  // Level-triggered: a relabel of the PatchJob brings another pass, which changes nothing.
  const generation = d.metadata!.generation;
  await api.patchNamespacedCustomObject(
    {
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: "patchjobs",
      namespace: AUTO,
      name: "api",
      body: { metadata: { labels: { poke: "1" } } },
    },
    (await import("@kubernetes/client-node")).setHeaderOptions(
      "Content-Type",
      "application/merge-patch+json",
    ),
  );
  await waitFor("the relabel seen", async () =>
    (await getPatchJob(kc, AUTO, "api")).metadata.labels?.poke ? true : undefined,
  );
  const after = await apps.readNamespacedDeployment({ namespace: AUTO, name: "api" });
  assert.equal(after.metadata!.generation, generation, "no further write to the Deployment's spec");
  console.log(`# rollout Auto: Succeeded -> 2 workloads Updated in ${ms} ms (no Pods: replicas 0)`);
});
