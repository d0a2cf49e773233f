// Rollout, DryRun (issue 21's first slice) on the real apiserver with the controller:
// after a patch, the PatchJob's status lists the workloads of its namespace that run the
// source image, Planned or Skipped with why; nothing is changed, and another namespace's
// workload running the same image is not looked at.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { AppsV1Api, CustomObjectsApi, type V1Deployment } from "@kubernetes/client-node";
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

before(async () => {
  env = await testEnv();
  const made = await namespaces(env, "rollout", "rollout-other");
  NS = made.rollout!;
  OTHER = made["rollout-other"]!;
  nc = await connectNats({ url: env.natsURL, name: "rollout-test" });
  ctl = await startController({ kc: env.kubeConfig(), nc, namespaces: [NS, OTHER], policyNamespace: NS });
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
): V1Deployment => ({
  metadata: { name, ...meta },
  spec: {
    replicas: 1,
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
  const versions = async () =>
    Object.fromEntries(
      [
        ...(await apps.listNamespacedDeployment({ namespace: NS })).items,
        ...(await apps.listNamespacedDeployment({ namespace: OTHER })).items,
      ].map((d) => [`${d.metadata!.namespace}/${d.metadata!.name}`, d.metadata!.resourceVersion]),
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
      [`${NS}/Deployment/argo`, "Skipped", "GitOpsManaged"],
      [`${NS}/Deployment/pinned`, "Skipped", "OptedOut"],
      [`${NS}/Deployment/web`, "Planned", ""],
    ],
  );
  assert.deepEqual(await versions(), before, "DryRun: no Deployment changed, here or in the other namespace");
});
