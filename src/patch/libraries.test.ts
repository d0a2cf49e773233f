import { test } from "node:test";
import assert from "node:assert/strict";
import type { LibraryUpdate } from "../api/index.ts";
import { copaArgv } from "./argv.ts";
import { copaLibraryReason, planLibraryUpdates, trivyReport, verifyLibraryUpdates } from "./libraries.ts";

const U: LibraryUpdate = {
  type: "python-pkg",
  name: "urllib3",
  installedVersion: "1.26.4",
  fixedVersion: "1.26.5",
  path: "usr/local/lib/python3.11/dist-packages/urllib3-1.26.4.dist-info/METADATA",
  vulnerabilityIDs: ["CVE-2021-33503"],
};
const N: LibraryUpdate = {
  type: "node-pkg",
  name: "minimist",
  installedVersion: "1.2.5",
  fixedVersion: "1.2.6",
  path: "app/node_modules/minimist/package.json",
  vulnerabilityIDs: ["CVE-2021-44906"],
};

test("library plan - needed below the fix (at the lowest version found), satisfied at or above, absent when not found", () => {
  const p = planLibraryUpdates([U, N, { ...U, name: "idna" }], [["1.26.4"], ["1.2.6"], []]);
  assert.deepEqual(p.needed, [U]);
  assert.deepEqual(p.satisfied, [N]);
  assert.deepEqual(p.absent, [{ ...U, name: "idna" }]);
  // Two copies, one fixed: still needed, from the older one.
  assert.equal(planLibraryUpdates([N], [["1.2.6", "1.2.3"]]).needed[0]!.installedVersion, "1.2.3");
});

test("library verification - fixed only at or above the fix in the patched image, with its CVEs", () => {
  const v = verifyLibraryUpdates([U, N], [["1.26.5"], ["1.2.5"]]);
  assert.deepEqual(
    v.fixed.map((u) => [u.name, u.version]),
    [["urllib3", "1.26.5"]],
  );
  assert.deepEqual(
    v.remaining.map((u) => [u.name, u.version]),
    [["minimist", "1.2.5"]],
  );
  assert.deepEqual(v.fixedCVEs, ["CVE-2021-33503"]);
});

test("trivy report - OS and library results as copa reads them, one row per CVE, paths kept", () => {
  const os = {
    name: "liblzma5",
    installedVersion: "5.4.1-1",
    fixedVersion: "5.4.1-1+deb12u1",
    vulnerabilityIDs: ["CVE-2025-31115"],
  };
  const r = trivyReport(
    "127.0.0.1:5000/app:1",
    { type: "debian", version: "12.12" },
    { architecture: "amd64" },
    [os],
    [U, N],
  );
  assert.deepEqual(r.Metadata, {
    OS: { Family: "debian", Name: "12.12" },
    ImageConfig: { architecture: "amd64" },
  });
  assert.deepEqual(
    r.Results.map((x) => [x.Class, x.Type, x.Vulnerabilities.length]),
    [
      ["os-pkgs", "debian", 1],
      ["lang-pkgs", "node-pkg", 1],
      ["lang-pkgs", "python-pkg", 1],
    ],
  );
  assert.equal(r.Results[2]!.Vulnerabilities[0]!.PkgPath, U.path);
  assert.equal(
    trivyReport("a", { type: "debian", version: "12" }, { architecture: "arm64" }, [], [N]).Results.length,
    1,
  );
});

test("copa's argv for library updates: the Trivy report, its package types, each version as chosen", () => {
  const argv = copaArgv({
    image: { registry: "r:5000", repository: "app", tag: "1" },
    target: { registry: "r:5000", repository: "app", tag: "1-patched" },
    buildkitAddr: "tcp://127.0.0.1:1234",
    manifestPath: "/tmp/m.json",
    timeout: "5m",
    libraries: { pkgTypes: "os,library" },
  });
  const at = argv.indexOf("--scanner");
  assert.deepEqual(argv.slice(at, at + 6), [
    "--scanner",
    "trivy",
    "--pkg-types",
    "os,library",
    "--library-patch-level",
    "major",
  ]);
});

test("copa's reason for a library: the last error line naming it, else the language manager's", () => {
  const out = [
    'time="2026-12-01T10:00:00Z" level=info msg="Patching python packages"',
    'time="2026-12-01T10:00:01Z" level=error msg="pip: No matching distribution found for urllib3==1.26.999"',
    "Error: Error applying updates with language manager: exit code 1",
  ].join("\n");
  assert.match(copaLibraryReason(out, "urllib3")!, /No matching distribution found for urllib3==1\.26\.999/);
  assert.match(copaLibraryReason(out, "minimist")!, /Error applying updates with language manager/);
  assert.equal(copaLibraryReason("all fine", "minimist"), undefined);
  // pip's own line inside BuildKit's step output comes first, without the step's prefix.
  const pip = `#4 0.373 ERROR: No matching distribution found for urllib3==1.26.999\n${out}`;
  assert.equal(
    copaLibraryReason(pip, "urllib3"),
    "ERROR: No matching distribution found for urllib3==1.26.999",
  );
});

test("copa's reason for a library: pip's retries through a refused proxy are the library's failure, not BuildKit's", () => {
  const out = [
    "#5 0.9 WARNING: Retrying (Retry(total=4)) after connection broken by 'ProxyError('Cannot connect to proxy.', NewConnectionError('[Errno 111] Connection refused'))': /simple/urllib3/",
    "#5 5.1 ERROR: Could not find a version that satisfies the requirement urllib3==1.26.19 (from versions: none)",
    'Error: failed to solve: process "pip install --timeout=300 urllib3==1.26.19" did not complete successfully: exit code: 1',
  ].join("\n");
  assert.match(
    copaLibraryReason(out, "urllib3")!,
    /^ERROR: Could not find a version that satisfies the requirement urllib3==1\.26\.19/,
  );
  // A broken pipe to BuildKit is not a package manager's failure.
  assert.equal(copaLibraryReason("error: write: broken pipe; failed to dial", "urllib3"), undefined);
});
