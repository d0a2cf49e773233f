// Smoke tests that prove each component of the environment is the real thing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { BatchV1Api, CoreV1Api, CustomObjectsApi, Watch, type V1Job } from "@kubernetes/client-node";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, AckPolicy, RetentionPolicy } from "@nats-io/jetstream";
import { setup, goBinary, isAlive, type Env } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { alpineReport } from "../fixtures/reports.ts";
import { patchJobCRD, REPORT_GROUP, REPORT_PLURAL, REPORT_VERSION } from "../../src/api/index.ts";
import { installCRDs } from "../../src/kube/index.ts";

const run = promisify(execFile);
let env: Env;

before(async () => {
  env = await setup();
});
after(async () => {
  const pids = Object.values(env?.endpoints().pids ?? {});
  await env?.stop();
  assert.deepEqual(pids.filter(isAlive), [], "no process left after stop");
});

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

test("env - kubectl (built from source) reaches the apiserver with the printed kubeconfig", async () => {
  const { stdout } = await run(goBinary("kubectl"), [
    "--kubeconfig",
    env.kubeconfig,
    "get",
    "ns",
    "-o",
    "name",
  ]);
  assert.match(stdout, /namespace\/default/);
  const v = await run(goBinary("kubectl"), ["--kubeconfig", env.kubeconfig, "version", "-o", "json"]);
  assert.equal(JSON.parse(v.stdout).serverVersion.gitVersion, "v1.36.3");
});

test("env - a CRD, an object of it, and a watch that sees it", async () => {
  const kc = env.kubeConfig();
  await installCRDs(kc, [patchJobCRD()]);
  const events: string[] = [];
  // A fresh CRD's watch cache answers 429 while it initialises (kube-apiserver >= 1.31):
  // retry until the watch is open, as any informer must.
  let w: AbortController | undefined;
  let ended: unknown;
  await waitFor(
    "an open watch",
    async () => {
      ended = undefined;
      w = await new Watch(kc).watch(
        "/apis/vulnpatcher.io/v1alpha1/namespaces/default/patchjobs",
        {},
        (type, obj: { metadata: { name: string } }) => events.push(`${type} ${obj.metadata.name}`),
        (err) => (ended = err ?? "closed"),
      );
      await sleep(300);
      return ended === undefined || undefined;
    },
    20_000,
  );
  try {
    await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: "patchjobs",
      namespace: "default",
      body: {
        apiVersion: "vulnpatcher.io/v1alpha1",
        kind: "PatchJob",
        metadata: { name: "smoke" },
        spec: {
          image: { registryURI: "r.io", repository: "a/b", platform: "linux/amd64" },
          source: "manual",
        },
      },
    });
    await waitFor("the ADDED event", async () => events.includes("ADDED smoke") || undefined, 10_000).catch(
      (e: Error) =>
        assert.fail(`${e.message}; events ${JSON.stringify(events)}; watch ended: ${String(ended)}`),
    );
  } finally {
    w?.abort();
  }
});

test("env - kube-controller-manager: a Job creates a Pod, and deleting the Job garbage-collects it", async () => {
  const kc = env.kubeConfig();
  const batch = kc.makeApiClient(BatchV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const job: V1Job = {
    metadata: { name: "smoke-job" },
    spec: {
      backoffLimit: 0,
      template: {
        spec: { restartPolicy: "Never", containers: [{ name: "c", image: "busybox", command: ["true"] }] },
      },
    },
  };
  await batch.createNamespacedJob({ namespace: "default", body: job });
  const pod = await waitFor(
    "a Pod for the Job",
    async () =>
      (await core.listNamespacedPod({ namespace: "default", labelSelector: "job-name=smoke-job" })).items[0],
  );
  assert.equal(pod.metadata?.ownerReferences?.[0]?.kind, "Job");
  await batch.deleteNamespacedJob({
    namespace: "default",
    name: "smoke-job",
    propagationPolicy: "Background",
  });
  await waitFor(
    "the Pod to be garbage-collected",
    async () =>
      (await core.listNamespacedPod({ namespace: "default", labelSelector: "job-name=smoke-job" })).items
        .length === 0 || undefined,
  );
});

test("env - the sbomscanner VulnerabilityReport test CRD takes the real example report", async () => {
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  const co = kc.makeApiClient(CustomObjectsApi);
  const report = alpineReport() as { metadata: { name: string } };
  await co.createNamespacedCustomObject({
    group: REPORT_GROUP,
    version: REPORT_VERSION,
    plural: REPORT_PLURAL,
    namespace: "default",
    body: report,
  });
  const got = (await co.getNamespacedCustomObject({
    group: REPORT_GROUP,
    version: REPORT_VERSION,
    plural: REPORT_PLURAL,
    namespace: "default",
    name: report.metadata.name,
  })) as { imageMetadata: { repository: string } };
  assert.equal(got.imageMetadata.repository, "kubewarden/sbomscanner/test-assets/golang");
});

test("env - JetStream: publish, de-duplicate by message id, consume and ack", async () => {
  const nc = await connect({ servers: env.natsURL });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "SMOKE", subjects: ["smoke.>"], retention: RetentionPolicy.Workqueue });
    const js = jetstream(nc);
    const a = await js.publish("smoke.a", "hello", { msgID: "m1" });
    const b = await js.publish("smoke.a", "hello", { msgID: "m1" });
    assert.equal(a.duplicate, false);
    assert.equal(b.duplicate, true);
    await jsm.consumers.add("SMOKE", { durable_name: "c", ack_policy: AckPolicy.Explicit });
    const c = await js.consumers.get("SMOKE", "c");
    const m = await c.next({ expires: 5_000 });
    assert.equal(m?.string(), "hello");
    await m?.ackAck();
    assert.equal((await jsm.streams.info("SMOKE")).state.messages, 0, "work-queue message removed on ack");
  } finally {
    await nc.close();
  }
});

test("env - registry: push a blob and a manifest, pull them back", async () => {
  const base = `http://${env.registryHost}/v2/smoke/thing`;
  const config = Buffer.from(
    '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
  );
  const digest = "sha256:" + createHash("sha256").update(config).digest("hex");
  const start = await fetch(`${base}/blobs/uploads/`, { method: "POST" });
  assert.equal(start.status, 202);
  const loc = new URL(start.headers.get("location")!, `http://${env.registryHost}`);
  loc.searchParams.set("digest", digest);
  assert.equal(
    (
      await fetch(loc, {
        method: "PUT",
        body: config,
        headers: { "content-type": "application/octet-stream" },
      })
    ).status,
    201,
  );
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest, size: config.length },
    layers: [],
  });
  const put = await fetch(`${base}/manifests/v1`, {
    method: "PUT",
    body: manifest,
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(put.status, 201);
  const got = await fetch(`${base}/manifests/v1`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(await got.text(), manifest);
  assert.equal(
    got.headers.get("docker-content-digest"),
    "sha256:" + createHash("sha256").update(manifest).digest("hex"),
  );
});

test("env - two environments run side by side on different ports", async () => {
  await using other = await setup({ kube: false });
  assert.notEqual(other.natsURL, env.natsURL);
  assert.notEqual(other.registryHost, env.registryHost);
  const nc = await connect({ servers: other.natsURL });
  await nc.close();
});
