import { test } from "node:test";
import assert from "node:assert/strict";
import type { Decision } from "./decide-report.ts";
import { decide } from "../../test/support/decide.ts";
import { API_VERSION, KIND, parseReport, type PatchJob, type VulnerabilityReport } from "../api/index.ts";
import { alpineReport, clone, debianReport, debianReportWithPython } from "../../test/fixtures/reports.ts";

function parsed(o: unknown): VulnerabilityReport {
  const r = parseReport(o);
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

/** The PatchJob a create decision would have written. */
function existingFrom(d: Decision): PatchJob {
  assert.ok(d.action === "create" || d.action === "update");
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: d.name, namespace: "default", generation: 1 },
    spec: d.spec,
  };
}

test("decide - a new report with fixable findings: create, with the full spec", () => {
  const d = decide(parsed(debianReport()), undefined);
  assert.equal(d.action, "create");
  if (d.action !== "create") return;
  assert.equal(d.name, "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c");
  assert.deepEqual(d.spec.image, {
    registryURI: "127.0.0.1:5000",
    repository: "library/debian",
    tag: "bookworm-vuln",
    digest: "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
    platform: "linux/amd64",
  });
  assert.equal(d.spec.source, "report");
  assert.deepEqual(d.spec.reportRef, {
    namespace: "default",
    name: d.name,
    uid: "3f7e2b1a-0c9d-4e8f-a7b6-5c4d3e2f1a0b",
    resourceVersion: "4711",
  });
  assert.deepEqual(d.spec.os, { type: "debian", version: "12.15" });
  assert.deepEqual(d.spec.updates?.find((u) => u.name === "libpcre2-8-0")?.vulnerabilityIDs, [
    "CVE-2022-41409",
    "CVE-2025-58050",
  ]);
  assert.deepEqual(d.spec.target, { tagSuffix: "-patched" });
  assert.deepEqual(d.spec.options, { ignoreErrors: false, timeout: "10m" });
  assert.deepEqual(d.before, { total: 6, fixable: 4 });
});

test("decide - settings flow into the spec", () => {
  const d = decide(parsed(debianReport()), undefined, {
    tagSuffix: "-fixed",
    timeout: "30m",
    ignoreErrors: true,
  });
  assert.equal(d.action, "create");
  if (d.action === "create") {
    assert.deepEqual(d.spec.target, { tagSuffix: "-fixed" });
    assert.deepEqual(d.spec.options, { ignoreErrors: true, timeout: "30m" });
  }
});

test("decide - a rescan that changes only labels, resourceVersion and generation: leave", () => {
  const first = decide(parsed(debianReport()), undefined);
  const rescan = clone(debianReport()) as any;
  rescan.metadata.resourceVersion = "5000";
  rescan.metadata.generation = 3;
  rescan.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = "new-scan";
  rescan.report.summary.low = 9;
  const d = decide(parsed(rescan), existingFrom(first));
  assert.deepEqual(d, {
    action: "leave",
    name: first.action === "create" ? first.name : "",
    reason: "UpToDate",
    message: "digest and fixable findings unchanged",
  });
});

test("decide - changed fixable findings: update with the new hash", () => {
  const first = decide(parsed(debianReport()), undefined);
  const changed = clone(debianReport()) as any;
  changed.report.results[0].vulnerabilities[0].fixedVersions = ["5.4.1-1+deb12u3"];
  const d = decide(parsed(changed), existingFrom(first));
  assert.equal(d.action, "update");
  if (d.action === "update" && first.action === "create") {
    assert.equal(d.why, "FindingsChanged");
    assert.notEqual(d.spec.findingsHash, first.spec.findingsHash);
  }
});

test("decide - a new digest: update", () => {
  const first = decide(parsed(debianReport()), undefined);
  const moved = clone(debianReport()) as any;
  moved.imageMetadata.digest = "sha256:" + "f".repeat(64);
  const d = decide(parsed(moved), existingFrom(first));
  assert.equal(d.action, "update");
  if (d.action === "update") assert.equal(d.why, "DigestChanged");
});

const skips: Array<[string, (o: any) => void, string]> = [
  [
    "a report for our own patched tag",
    (o) => (o.imageMetadata.tag = "bookworm-vuln-patched"),
    "OwnPatchedImage",
  ],
  [
    "a report with nothing fixable",
    (o) => {
      for (const v of o.report.results[0].vulnerabilities) v.fixedVersions = [];
    },
    "NothingFixable",
  ],
  ["a report with no findings at all", (o) => (o.report.results = []), "NoOSPackages"],
  ["an unsupported OS", (o) => (o.report.results[0].type = "wolfi"), "UnsupportedOS"],
  ["an unknown OS", (o) => (o.report.results[0].type = "haiku"), "UnknownOS"],
  ["a report being deleted", (o) => (o.metadata.deletionTimestamp = "2026-11-23T10:00:00Z"), "Deleting"],
];
for (const [what, mutate, reason] of skips) {
  test(`decide - skip ${what} (${reason})`, () => {
    const o = clone(debianReport());
    mutate(o);
    const d = decide(parsed(o), undefined);
    assert.equal(d.action, "skip");
    if (d.action === "skip") assert.equal(d.reason, reason);
  });
}

test("decide - a custom suffix marks our own output", () => {
  const o = clone(debianReport()) as any;
  o.imageMetadata.tag = "bookworm-vuln-fixed";
  assert.equal(decide(parsed(o), undefined, { tagSuffix: "-fixed" }).action, "skip");
  assert.equal(decide(parsed(o), undefined).action, "create", "not our suffix by default");
});

test("decide - an existing PatchJob stays as history when the report no longer has anything to fix", () => {
  const first = decide(parsed(debianReport()), undefined);
  const o = clone(debianReport()) as any;
  for (const v of o.report.results[0].vulnerabilities) v.fixedVersions = [];
  const d = decide(parsed(o), existingFrom(first));
  assert.equal(d.action, "leave");
  if (d.action === "leave") assert.equal(d.reason, "Skipped");
});

test("decide - a PatchJob created by hand or by a policy is never overwritten", () => {
  const first = decide(parsed(debianReport()), undefined);
  const manual = existingFrom(first);
  manual.spec = { ...manual.spec, source: "manual", findingsHash: undefined };
  const d = decide(parsed(debianReport()), manual);
  assert.equal(d.action, "leave");
  if (d.action === "leave") assert.equal(d.reason, "NotOurs");
});

test("decide - the real Alpine example: create, apk updates", () => {
  const d = decide(parsed(alpineReport()), undefined);
  assert.equal(d.action, "create");
  if (d.action === "create") {
    assert.equal(d.spec.os?.type, "alpine");
    assert.ok(d.spec.updates!.some((u) => u.name === "apk-tools" && u.fixedVersion === "2.10.7-r0"));
  }
});

test("decide - fixes listed but all malformed: Invalid with the reason; a PatchJob that already patched is left alone", () => {
  const o = clone(debianReport()) as any;
  for (const v of o.report.results[0].vulnerabilities)
    if ((v.fixedVersions ?? []).length) v.fixedVersions = ["$(reboot)"];
  const d = decide(parsed(o), undefined);
  assert.equal(d.action, "invalid");
  if (d.action === "invalid") {
    assert.equal(d.reason, "InvalidReport");
    assert.match(
      d.message,
      /no usable fix: \d+ findings with a fix are malformed, e\.g\. .*"\$\(reboot\)" is not a dpkg version/,
    );
  }
  const earlier = existingFrom(decide(parsed(debianReport()), undefined));
  assert.equal(decide(parsed(o), earlier).action, "leave");
  // The record of an invalid report (no image) is refreshed, not left.
  const record: PatchJob = {
    ...earlier,
    spec: { source: "report", reportRef: { namespace: "default", name: earlier.metadata.name } },
  };
  assert.equal(decide(parsed(o), record).action, "invalid");
  // ...and becomes a real patch once the report is fixed.
  assert.equal(decide(parsed(debianReport()), record).action, "update");
});

test("decide - a value the CRD would refuse (an oversized CVE id) makes the report Invalid, never a failing write", () => {
  const o = clone(debianReport()) as any;
  o.report.results[0].vulnerabilities[0].cve = "CVE-2026-" + "1".repeat(80);
  const d = decide(parsed(o), undefined);
  assert.equal(d.action, "invalid");
  if (d.action === "invalid") assert.match(d.message, /vulnerabilityIDs\[0\]: longer than 64/);
});

test("decide - policies: another policy or a DryRun switch patches again; a PatchJob from before policies does not", () => {
  const r = parsed(debianReport());
  const policy = (name: string, dryRun = false) => ({
    policy: { name, namespace: "vp", ...(dryRun ? { dryRun } : {}) },
  });
  const withA = existingFrom(decide(r, undefined, policy("a")));
  assert.deepEqual(withA.spec.policyRef, { name: "a", namespace: "vp" });
  assert.equal(decide(r, withA, policy("a")).action, "leave");
  const moved = decide(r, withA, policy("b"));
  assert.ok(moved.action === "update" && moved.why === "PolicyChanged");
  const dry = decide(r, withA, policy("a", true));
  assert.ok(dry.action === "update" && dry.why === "PolicyChanged" && dry.spec.dryRun === true);
  const legacy = existingFrom(decide(r, undefined));
  assert.equal(legacy.spec.policyRef, undefined);
  assert.equal(
    decide(r, legacy, policy("default")).action,
    "leave",
    "an upgrade does not re-patch everything",
  );
  const target = decide(r, undefined, {
    policy: { name: "t", namespace: "vp", target: { reference: "r:5000/x/y:1-p" } },
  });
  assert.ok(target.action === "create");
  assert.deepEqual(target.spec.target, { reference: "r:5000/x/y:1-p" });
});

/** The Debian report with a Python package finding (and its Go binary finding). */
function withPython(): VulnerabilityReport {
  return parsed(debianReportWithPython());
}

const LIBRARY_POLICY = {
  name: "libs",
  namespace: "default",
  libraries: { packageTypes: ["os", "library"] as const },
};

test("decide - libraries: patched only when the policy opts in; OS-only specs keep their hash", () => {
  const osOnly = decide(withPython(), undefined);
  const plain = decide(parsed(debianReport()), undefined);
  assert.ok(osOnly.action === "create" && plain.action === "create");
  assert.equal(osOnly.spec.libraryUpdates, undefined);
  assert.equal(osOnly.spec.findingsHash, plain.spec.findingsHash);
  const d = decide(withPython(), undefined, { policy: { ...LIBRARY_POLICY } });
  assert.ok(d.action === "create");
  assert.deepEqual(d.spec.libraryUpdates, [
    {
      type: "python-pkg",
      name: "urllib3",
      installedVersion: "1.26.4",
      fixedVersion: "1.26.5",
      path: "usr/local/lib/python3.11/dist-packages/urllib3-1.26.4.dist-info/METADATA",
      vulnerabilityIDs: ["CVE-2021-33503"],
    },
  ]);
  assert.notEqual(d.spec.findingsHash, plain.spec.findingsHash);
  assert.equal(d.spec.updates?.length, plain.spec.updates?.length);
  assert.deepEqual(d.before, { total: 7, fixable: 5 });
  // An existing OS-only PatchJob is patched again once the policy opts in.
  const again = decide(withPython(), existingFrom(osOnly), { policy: { ...LIBRARY_POLICY } });
  assert.equal(again.action === "update" && again.why, "FindingsChanged");
});

test("decide - libraries alone: no OS updates in the spec (never an empty list, which means update all)", () => {
  const d = decide(withPython(), undefined, {
    policy: { ...LIBRARY_POLICY, libraries: { packageTypes: ["library"] } },
  });
  assert.ok(d.action === "create");
  assert.equal(d.spec.updates, undefined);
  assert.equal(d.spec.libraryUpdates?.length, 1);
  assert.deepEqual(d.before, { total: 7, fixable: 1 });
});
