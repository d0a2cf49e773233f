// The independent after-scan, on the real apiserver with the controller: a PatchJob that
// Succeeded (its status written as a worker writes it) and sbomscanner's report of the
// patched digest (a VulnerabilityReport, as the scanner makes it). Agreeing report ->
// Verified=True; a report still listing a CVE marked fixed -> Verified=False and a
// Warning Event naming it; no report yet -> Verified=Unknown.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { installGrant, namespaces, testEnv } from "../support/shared.ts";
import { idle } from "../support/controller.ts";
import { createPatchJob, getPatchJob, manualSpec } from "../support/patchjobs.ts";
import { digestOf, makeReport } from "../fixtures/make-report.ts";
import { markSucceeded, type PatchJob } from "../../src/api/index.ts";
import { patchJobClient } from "../../src/kube/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController, type RunningController } from "../../src/controller/manager.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let NS: string;

before(async () => {
  env = await testEnv();
  NS = (await namespaces(env, "after-scan"))["after-scan"]!;
  // PatchJobs by hand of images no report here names: about verification, not tenancy.
  await installGrant(env, NS, "*");
  nc = await connectNats({ url: env.natsURL, name: "after-scan-test" });
  ctl = await startController({ kc: env.kubeConfig(), nc, namespaces: [NS], policyNamespace: NS });
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
