// The after-scan decision, from plain values (the controller doing it on the real
// apiserver is test/integration/after-scan.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { markSucceeded, type PatchJob } from "../api/index.ts";
import { summarizeReport } from "./facts.ts";
import { decideVerification, scanJobFor, withVerification } from "./verify-scan.ts";
import { makeReport } from "../../test/fixtures/make-report.ts";

const now = new Date("2026-11-30T12:00:00Z");
const base: PatchJob = {
  apiVersion: "vulnpatcher.io/v1alpha1",
  kind: "PatchJob",
  metadata: { name: "web", namespace: "team", generation: 1 },
  spec: { source: "manual" },
} as PatchJob;
const cve = makeReport({ name: "x" }).report.results[0].vulnerabilities[0].cve as string;
const done = (fixed: string[]): PatchJob => ({
  ...base,
  status: markSucceeded(
    base,
    { patchedImage: { reference: "r/web:1-patched", digest: "sha256:p" }, fixedCVEs: fixed },
    undefined,
    now,
  ),
});
const scanOf = (fixable: boolean) => {
  const r = makeReport({ name: "scan", namespace: "team", tag: "1-patched" });
  if (!fixable) for (const res of r.report.results) for (const v of res.vulnerabilities) v.fixedVersions = [];
  return { key: "team/scan", summary: summarizeReport(r) };
};

test("verify-scan: only a Succeeded PatchJob at its generation is verified", () => {
  assert.equal(decideVerification(undefined, scanOf(false), now), undefined);
  assert.equal(decideVerification(base, scanOf(false), now), undefined);
  const stale = { ...done([cve]), metadata: { ...base.metadata, generation: 2 } };
  assert.equal(decideVerification(stale, scanOf(false), now), undefined);
});

test("verify-scan: no scan -> Unknown once; agreeing -> True; disputed -> False with a Warning naming the CVE", () => {
  const waiting = decideVerification(done([cve]), undefined, now);
  assert.equal(waiting?.kind, "status");
  const w = waiting!.kind === "status" ? waiting!.status : undefined;
  assert.equal(w?.conditions?.find((c) => c.type === "Verified")?.status, "Unknown");
  assert.equal(decideVerification({ ...done([cve]), status: w }, undefined, now), undefined, "said once");

  const agree = decideVerification(done([cve]), scanOf(false), now);
  assert.ok(agree?.kind === "status");
  assert.equal(agree.status.conditions?.find((c) => c.type === "Verified")?.status, "True");
  assert.deepEqual(agree.status.verification, {
    report: { namespace: "team", name: "scan" },
    digest: scanOf(false).summary.facts!.imageMetadata.digest,
    fixableLeft: 0,
    agreed: 1,
    disputed: [],
  });
  assert.equal(agree.event?.type, "Normal");
  assert.equal(
    decideVerification({ ...done([cve]), status: agree.status }, scanOf(false), now),
    undefined,
    "level-triggered",
  );

  const dispute = decideVerification(done([cve]), scanOf(true), now);
  assert.ok(dispute?.kind === "status");
  assert.equal(dispute.status.conditions?.find((c) => c.type === "Verified")?.status, "False");
  assert.deepEqual(dispute.status.verification?.disputed, [cve]);
  assert.equal(dispute.event?.type, "Warning");
  assert.match(dispute.event!.message, new RegExp(cve));
});

test("verify-scan: a reconciler's own action comes first", () => {
  const own = { kind: "requeue", afterMs: 5, reason: "r", message: "m" } as const;
  assert.equal(withVerification(own, done([cve]), scanOf(false), now), own);
  assert.equal(
    withVerification({ kind: "none", reason: "x", message: "y" }, done([cve]), scanOf(false), now).kind,
    "status",
  );
});

test("verify-scan: asked for a scan once per patch (the ScanJob's name is the patch's: uid and generation)", () => {
  const pj = { ...done([cve]), metadata: { ...base.metadata, uid: "u-1" } };
  const ask = decideVerification(pj, undefined, now, { registry: "ours", repository: "team/web" });
  assert.ok(ask?.kind === "scanJob");
  assert.deepEqual(ask.scanJob.spec, { registry: "ours", repositories: [{ name: "team/web" }] });
  assert.equal(ask.scanJob.metadata.namespace, "team");
  assert.equal(ask.status.conditions?.find((c) => c.type === "Verified")?.reason, "ScanRequested");
  const asked = { ...pj, status: ask.status };
  assert.equal(decideVerification(asked, undefined, now, { registry: "ours" }), undefined, "not asked twice");
  assert.equal(scanJobFor(pj, { registry: "ours" }).metadata.name, ask.scanJob.metadata.name);
  const next = { ...pj, metadata: { ...pj.metadata, generation: 2 } };
  assert.notEqual(
    scanJobFor(next, { registry: "ours" }).metadata.name,
    ask.scanJob.metadata.name,
    "a new patch, a new ScanJob",
  );
  assert.match(ask.scanJob.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
});
