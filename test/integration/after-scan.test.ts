// The independent after-scan, on the real apiserver with the controller: a PatchJob that
// Succeeded (its status written as a worker writes it) and sbomscanner's report of the
// patched digest (a VulnerabilityReport, as the scanner makes it). Agreeing report ->
// Verified=True; a report still listing a CVE marked fixed -> Verified=False and a
// Warning Event naming it; no report yet -> Verified=Unknown.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { installGrant, namespaces, testEnv } from "../support/shared.ts";
import { idle } from "../support/controller.ts";
import { createPatchJob, getPatchJob, manualSpec } from "../support/patchjobs.ts";
import { digestOf, makeReport } from "../fixtures/make-report.ts";
import { defaultPolicy, markSucceeded, type PatchJob, POLICY_PLURAL } from "../../src/api/index.ts";
import { patchJobClient } from "../../src/kube/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController, type RunningController } from "../../src/controller/manager.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let NS: string;
/** A namespace with a policy that asks sbomscanner for each scan. */
let SCAN_NS: string;

before(async () => {
  env = await testEnv();
  const made = await namespaces(env, "after-scan", "scan-request");
  NS = made["after-scan"]!;
  SCAN_NS = made["scan-request"]!;
  // PatchJobs by hand of images no report here names: about verification, not tenancy.
  await installGrant(env, NS, "*");
  nc = await connectNats({ url: env.natsURL, name: "after-scan-test" });
  ctl = await startController({ kc: env.kubeConfig(), nc, namespaces: [NS, SCAN_NS], policyNamespace: NS });
});

after(async () => {
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

/** A manual PatchJob, then its status as a worker records a patch: `digest`, these CVEs fixed. */
async function succeeded(name: string, digest: string, fixedCVEs: string[]): Promise<PatchJob> {
  const kc = env.kubeConfig();
  await createPatchJob(
    kc,
    NS,
    name,
    manualSpec(`registry.example/team/${name}:1.0`, digestOf(`${name}-src`)),
  );
  const client = patchJobClient(kc);
  // The controller queues it first (no worker here): then the worker's record.
  const queued = await waitFor(`${name} Queued`, async () => {
    const pj = await getPatchJob(kc, NS, name);
    return pj.status?.phase === "Queued" ? pj : undefined;
  });
  return client.updateStatus(
    queued,
    markSucceeded(queued, {
      patchedImage: { reference: `registry.example/team/${name}:1.0-patched`, digest },
      fixedCVEs,
    }),
  );
}

/** sbomscanner's report of the patched image; `fixable` false: no finding with a fix left. */
async function scan(name: string, digest: string, fixable: boolean) {
  const r = makeReport({ name, namespace: NS, tag: "1.0-patched" });
  r.imageMetadata.digest = digest;
  if (!fixable) for (const res of r.report.results) for (const v of res.vulnerabilities) v.fixedVersions = [];
  await reportsApi(env.kubeConfig()).create(r);
  return r;
}

const verified = (pj: PatchJob) => pj.status?.conditions?.find((c) => c.type === "Verified");

test("after-scan - no report yet: Verified Unknown (waiting); the scanner agrees: Verified True with what it found", async () => {
  const kc = env.kubeConfig();
  const digest = digestOf("agree-patched");
  const cve = makeReport({ name: "x" }).report.results[0].vulnerabilities[0].cve as string;
  await succeeded("agree", digest, [cve]);
  const waiting = await waitFor("Verified Unknown", async () => {
    const pj = await getPatchJob(kc, NS, "agree");
    return verified(pj)?.status === "Unknown" ? pj : undefined;
  });
  assert.equal(verified(waiting)!.reason, "WaitingForScan");
  await scan("agree-scan", digest, false);
  const pj = await waitFor("Verified True", async () => {
    const p = await getPatchJob(kc, NS, "agree");
    return verified(p)?.status === "True" ? p : undefined;
  });
  assert.equal(verified(pj)!.reason, "ScannerAgrees");
  assert.deepEqual(pj.status?.verification, {
    report: { namespace: NS, name: "agree-scan" },
    digest,
    fixableLeft: 0,
    agreed: 1,
    disputed: [],
  });
  // Level-triggered: nothing more is written once it says so.
  await idle(ctl);
  const rv = (await getPatchJob(kc, NS, "agree")).metadata.resourceVersion;
  await reportsApi(kc).jsonPatch(NS, "agree-scan", [
    { op: "add", path: "/metadata/labels/rescan", value: "1" },
  ]);
  await waitFor(
    "the relabel seen",
    async () =>
      ctl.reportStore()?.get(`${NS}/agree-scan`)?.facts?.metadata.labels?.rescan === "1" || undefined,
  );
  await idle(ctl);
  assert.equal((await getPatchJob(kc, NS, "agree")).metadata.resourceVersion, rv, "no write for a relabel");
});

test("after-scan - the scanner still finds a CVE we marked fixed: Verified False and a Warning Event naming it", async () => {
  const kc = env.kubeConfig();
  const digest = digestOf("dispute-patched");
  const cve = makeReport({ name: "x" }).report.results[0].vulnerabilities[0].cve as string;
  await succeeded("dispute", digest, [cve]);
  await scan("dispute-scan", digest, true);
  const pj = await waitFor("Verified False", async () => {
    const p = await getPatchJob(kc, NS, "dispute");
    return verified(p)?.status === "False" ? p : undefined;
  });
  assert.equal(verified(pj)!.reason, "ScannerDisagrees");
  assert.deepEqual(pj.status?.verification?.disputed, [cve]);
  assert.match(verified(pj)!.message, new RegExp(cve));
  const ev = await waitFor("the Warning event", async () =>
    (await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: NS })).items.find(
      (e) => e.involvedObject.name === "dispute" && e.reason === "ScannerDisagrees",
    ),
  );
  assert.equal(ev.type, "Warning");
  assert.match(ev.message ?? "", new RegExp(cve));
});

test("after-scan - a policy with verification.requestScan: exactly one ScanJob per patch, for the Registry of the patched image's host; its report then verifies", async () => {
  const kc = env.kubeConfig();
  const ns = SCAN_NS;
  const api = kc.makeApiClient(CustomObjectsApi);
  const p = defaultPolicy(ns);
  await api.createNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: POLICY_PLURAL,
    namespace: ns,
    body: { ...p, spec: { ...p.spec, verification: { requestScan: true } } },
  });
  const report = makeReport({ name: "web", namespace: ns, tag: "1.0" });
  const host = report.imageMetadata.registryURI as string;
  // Two Registries of the namespace: only the one of the patched image's host is asked.
  for (const [name, uri] of [
    ["elsewhere", "other.example:5000"],
    ["ours", host],
  ])
    await api.createNamespacedCustomObject({
      group: "sbomscanner.kubewarden.io",
      version: "v1alpha1",
      plural: "registries",
      namespace: ns,
      body: {
        apiVersion: "sbomscanner.kubewarden.io/v1alpha1",
        kind: "Registry",
        metadata: { name },
        spec: { uri, repositories: [{ name: report.imageMetadata.repository }] },
      },
    });
  await reportsApi(kc).create(report);
  const queued = await waitFor("the report's PatchJob Queued", async () => {
    const pj = await getPatchJob(kc, ns, "web").catch(() => undefined);
    return pj?.status?.phase === "Queued" ? pj : undefined;
  });
  const digest = digestOf("web-patched");
  const patchedRef = `${host}/${report.imageMetadata.repository}:1.0-patched`;
  await patchJobClient(kc).updateStatus(
    queued,
    markSucceeded(queued, { patchedImage: { reference: patchedRef, digest }, fixedCVEs: [] }),
  );
  const asked = await waitFor("Verified Unknown (ScanRequested)", async () => {
    const pj = await getPatchJob(kc, ns, "web");
    return verified(pj)?.reason === "ScanRequested" ? pj : undefined;
  });
  const jobs = async () =>
    (
      (await api.listNamespacedCustomObject({
        group: "sbomscanner.kubewarden.io",
        version: "v1alpha1",
        plural: "scanjobs",
        namespace: ns,
      })) as {
        items: Array<{
          metadata: { name: string };
          spec: { registry: string; repositories?: Array<{ name: string }> };
        }>;
      }
    ).items;
  const [job, ...more] = await jobs();
  assert.deepEqual(more, [], "one ScanJob");
  assert.deepEqual(job!.spec, {
    registry: "ours",
    repositories: [{ name: report.imageMetadata.repository }],
  });
  assert.match(verified(asked)!.message, new RegExp(job!.metadata.name));
  // More passes over the PatchJob (a rescan of its report relabels it): still one.
  await reportsApi(kc).jsonPatch(ns, "web", [{ op: "add", path: "/metadata/labels/rescan", value: "1" }]);
  await waitFor(
    "the relabel seen",
    async () => ctl.reportStore()?.get(`${ns}/web`)?.facts?.metadata.labels?.rescan === "1" || undefined,
  );
  await idle(ctl);
  assert.equal((await jobs()).length, 1, "still one ScanJob");
  // sbomscanner's report of the patched image: it agrees (nothing was marked fixed to dispute).
  const after = makeReport({ name: "web-patched-scan", namespace: ns, tag: "1.0-patched" });
  after.imageMetadata.digest = digest;
  await reportsApi(kc).create(after);
  await waitFor(
    "Verified True",
    async () => verified(await getPatchJob(kc, ns, "web"))?.status === "True" || undefined,
  );
});
