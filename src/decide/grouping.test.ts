import { test } from "node:test";
import assert from "node:assert/strict";
import {
  indexChange,
  indexPlan,
  isIndexMember,
  isIndexPatchJob,
  looksLikeIndexName,
  markGrouped,
  patchJobNameForIndex,
} from "./grouping.ts";
import { decide, patchJobSpecProblems } from "../../test/support/decide.ts";
import { API_VERSION, KIND, parseReport, type PatchJob } from "../api/index.ts";
import { clone, debianReport } from "../../test/fixtures/reports.ts";

const IDX = "sha256:" + "1".repeat(64);
const IDX2 = "sha256:" + "2".repeat(64);

/** A member PatchJob, as the controller creates it from one platform's report. */
function member(
  arch: string,
  o: { indexDigest?: string; created?: string; name?: string; generation?: number; fixed?: string } = {},
): PatchJob {
  const r = clone(debianReport()) as Record<string, Record<string, unknown>>;
  r.metadata!.name = o.name ?? `report-${arch}`;
  r.imageMetadata!.platform = `linux/${arch}`;
  r.imageMetadata!.digest = "sha256:" + (arch === "amd64" ? "a" : "b").repeat(64);
  if (o.indexDigest !== undefined) r.imageMetadata!.indexDigest = o.indexDigest;
  else r.imageMetadata!.indexDigest = IDX;
  if (o.fixed) {
    const results = (
      r.report as unknown as { results: Array<{ vulnerabilities: Array<Record<string, unknown>> }> }
    ).results;
    for (const v of results[0]!.vulnerabilities) v.fixedVersions = [o.fixed];
  }
  const parsed = parseReport(r);
  assert.ok(parsed.ok);
  const d = decide(parsed.value, undefined);
  assert.equal(d.action, "create");
  if (d.action !== "create") throw new Error("unreachable");
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: d.name,
      namespace: "default",
      generation: o.generation ?? 1,
      creationTimestamp: o.created ?? "2026-11-29T10:00:00Z",
    },
    spec: d.spec,
    status: { vulnerabilities: { before: d.before } },
  };
}

test("group - the index name is stable per registry, repository and tag, not per digest", () => {
  const a = patchJobNameForIndex({ registryURI: "r:5000", repository: "library/debian", tag: "12" });
  assert.equal(a, patchJobNameForIndex({ registryURI: "r:5000", repository: "library/debian", tag: "12" }));
  assert.notEqual(
    a,
    patchJobNameForIndex({ registryURI: "r:5000", repository: "library/debian", tag: "13" }),
  );
  assert.notEqual(
    a,
    patchJobNameForIndex({ registryURI: "r:5001", repository: "library/debian", tag: "12" }),
  );
  assert.match(a, /^index-debian-[0-9a-f]{16}$/);
  // What the controller passes: each member's image spec, digests and platforms differing.
  assert.equal(
    patchJobNameForIndex(member("amd64").spec.image!),
    patchJobNameForIndex(member("arm64").spec.image!),
  );
  assert.ok(looksLikeIndexName(a));
  assert.ok(!looksLikeIndexName("bookworm"));
  assert.ok(!looksLikeIndexName("index-debian"));
});

test("group - members and index PatchJobs are told apart", () => {
  const m = member("amd64");
  assert.ok(isIndexMember(m));
  assert.ok(!isIndexPatchJob(m));
  assert.ok(!isIndexMember(member("amd64", { indexDigest: "" })), "no index digest: a single-arch image");
  const plan = indexPlan([m])!;
  const idx = { spec: plan.spec } as PatchJob;
  assert.ok(isIndexPatchJob(idx));
  assert.ok(!isIndexMember(idx));
});

test("group - two platform reports make one index PatchJob spec with both platforms", () => {
  const amd = member("amd64");
  const arm = member("arm64");
  const plan = indexPlan([arm, amd])!;
  assert.equal(plan.spec.image.platform, "all");
  assert.equal(plan.spec.image.digest, IDX);
  assert.equal(plan.spec.image.indexDigest, IDX);
  assert.equal(plan.spec.image.tag, amd.spec.image!.tag);
  assert.equal(plan.spec.source, "report");
  assert.equal(plan.spec.reportRef, undefined);
  assert.deepEqual(
    plan.spec.platforms.map((p) => [p.platform, p.digest, p.patchJob, p.generation]),
    [
      ["linux/amd64", amd.spec.image!.digest, amd.metadata.name, 1],
      ["linux/arm64", arm.spec.image!.digest, arm.metadata.name, 1],
    ],
  );
  assert.deepEqual(plan.spec.platforms[0]!.updates, amd.spec.updates);
  assert.deepEqual(plan.before, {
    total: amd.status!.vulnerabilities!.before!.total! * 2,
    fixable: amd.status!.vulnerabilities!.before!.fixable! * 2,
  });
  assert.deepEqual(plan.spec.options, { ignoreErrors: false, timeout: "10m", publishPartial: false });
  assert.deepEqual(patchJobSpecProblems(plan.spec), [], "the spec passes the CRD's schema");
  // The order the members come in does not matter.
  assert.deepEqual(indexPlan([amd, arm])!.spec, plan.spec);
});

test("group - the findings hash moves when a platform's findings or digest move, not otherwise", () => {
  const base = indexPlan([member("amd64"), member("arm64")])!;
  const same = indexPlan([member("amd64"), member("arm64")])!;
  assert.equal(indexChange({ spec: base.spec }, same.spec), "none", "the same members: no change");
  const newGen = indexPlan([member("amd64", { generation: 3 }), member("arm64")])!;
  assert.equal(
    indexChange({ spec: base.spec }, newGen.spec),
    "PlatformsChanged",
    "a member at a new generation waits for a result of its own: a new run",
  );
  const moreFixes = indexPlan([member("amd64"), member("arm64", { fixed: "999:9" })])!;
  assert.equal(indexChange({ spec: base.spec }, moreFixes.spec), "FindingsChanged");
  const newIndex = indexPlan([
    member("amd64", { indexDigest: IDX2 }),
    member("arm64", { indexDigest: IDX2 }),
  ])!;
  assert.equal(indexChange({ spec: base.spec }, newIndex.spec), "DigestChanged");
});

test("group - members of two index digests behind one tag: the majority digest, the rest wait", () => {
  const plan = indexPlan([
    member("amd64", { indexDigest: IDX2, created: "2026-11-29T11:00:00Z" }),
    member("arm64", { indexDigest: IDX2, created: "2026-11-29T11:00:00Z" }),
    member("s390x", { indexDigest: IDX, name: "old-s390x" }),
  ])!;
  assert.equal(plan.spec.image.digest, IDX2);
  assert.deepEqual(plan.waiting, ["old-s390x"]);
  // A tie: the newer digest.
  const tie = indexPlan([
    member("amd64", { indexDigest: IDX2, created: "2026-11-29T12:00:00Z" }),
    member("arm64", { indexDigest: IDX, created: "2026-11-29T10:00:00Z" }),
  ])!;
  assert.equal(tie.spec.image.digest, IDX2);
});

test("group - invalid and dry-run members do not count, a member whose report is gone still does; none left: no plan", () => {
  const invalid = member("amd64");
  invalid.status = { phase: "Invalid" };
  const gone = member("arm64");
  gone.status = {
    conditions: [
      {
        type: "SourceAvailable",
        status: "False",
        reason: "ReportDeleted",
        message: "",
        lastTransitionTime: "2026-11-29T10:00:00Z",
      },
    ],
  };
  const dry = member("amd64");
  dry.spec = { ...dry.spec, dryRun: true };
  assert.equal(indexPlan([invalid, dry]), undefined);
  assert.equal(indexPlan([]), undefined);
  assert.deepEqual(
    indexPlan([invalid, gone])!.spec.platforms.map((p) => p.platform),
    ["linux/arm64"],
    "its report is gone, its plan is still true: leaving it out would publish it unpatched",
  );
});

test("group - settings flow into the index spec", () => {
  const plan = indexPlan([member("amd64")], { tagSuffix: "-fixed", publishPartial: true, timeout: "30m" })!;
  assert.deepEqual(plan.spec.target, { tagSuffix: "-patched" }, "the members' target (their policy's) wins");
  const m = member("amd64");
  m.spec = { ...m.spec, target: { reference: "r:5000/patched/debian:12-p" } };
  assert.deepEqual(indexPlan([m])!.spec.target, { reference: "r:5000/patched/debian:12-p" });
  assert.deepEqual(plan.spec.options, { ignoreErrors: false, timeout: "30m", publishPartial: true });
});

test("group - a grouped member is Queued with reason Grouped, for its own generation, naming its index", () => {
  const m = { ...member("amd64", { generation: 4 }) };
  const s = markGrouped(m, "index-debian-0123456789abcdef");
  assert.equal(s.phase, "Queued");
  assert.equal(s.reason, "Grouped");
  assert.equal(s.observedGeneration, 4);
  assert.equal(s.group, "index-debian-0123456789abcdef");
  assert.deepEqual(s.vulnerabilities, m.status?.vulnerabilities, "the before counts stay");
  assert.match(s.message!, /index-debian-0123456789abcdef/);
});

test("naming - copa's staging tags are recognised, ordinary tags are not", async () => {
  const { isStagingTag } = await import("./naming.ts");
  const { stagingTag } = await import("../patch/staging.ts");
  for (const t of [
    "12-patched-vp-staging",
    "12-patched-vp-staging-arm64",
    "12-patched-vp-staging-arm-v7",
    stagingTag("x".repeat(120)),
  ])
    assert.ok(isStagingTag(t), t);
  for (const t of ["12", "12-patched", "vp-staging-12", undefined]) assert.ok(!isStagingTag(t), String(t));
  assert.ok(stagingTag("x".repeat(120)).length <= 100);
});
