import { test } from "node:test";
import assert from "node:assert/strict";
import {
  compareLibraryVersions,
  type LibraryFact,
  libraryUpdateProblem,
  MAX_LIBRARY_UPDATES,
  planLibraries,
  versionJump,
} from "./library.ts";

const SITE = "usr/local/lib/python3.11/dist-packages";
const urllib3 = (cve: string, fixed: string[], installed = "1.26.4"): LibraryFact => ({
  cve,
  type: "python-pkg",
  packageName: "urllib3",
  installedVersion: installed,
  fixedVersions: fixed,
  path: `${SITE}/urllib3-${installed}.dist-info/METADATA`,
});
const minimist: LibraryFact = {
  cve: "CVE-2021-44906",
  type: "node-pkg",
  packageName: "minimist",
  installedVersion: "1.2.5",
  fixedVersions: ["1.2.6"],
  path: "app/node_modules/minimist/package.json",
};
const ON = { packageTypes: ["os", "library"] as const };

test("library versions - each ecosystem's order (not string order), and the size of a jump", () => {
  assert.ok(compareLibraryVersions("python-pkg", "1.26.10", "1.26.9") > 0);
  assert.ok(compareLibraryVersions("python-pkg", "2.0.0rc1", "2.0.0") < 0);
  assert.ok(compareLibraryVersions("node-pkg", "1.2.10", "1.2.9") > 0);
  assert.ok(compareLibraryVersions("node-pkg", "2.0.0-beta.1", "2.0.0") < 0);
  assert.equal(versionJump("python-pkg", "1.26.4", "1.26.18"), "patch");
  assert.equal(versionJump("python-pkg", "1.26.4", "1.27"), "minor");
  assert.equal(versionJump("node-pkg", "1.2.5", "2.0.0"), "major");
});

test("planLibraries - by default (os only) nothing is patched and every finding says how to opt in", () => {
  const p = planLibraries([urllib3("CVE-2021-33503", ["1.26.5"]), minimist], {});
  assert.deepEqual(p.updates, []);
  assert.deepEqual(
    p.findings.map((f) => f.reason),
    ["LibraryNotPatched", "LibraryNotPatched"],
  );
  assert.match(p.findings[0]!.message, /packageTypes: \[os, library\]/);
  // A Go binary is never patched here: the message does not send the user to packageTypes.
  const go = planLibraries(
    [{ ...minimist, type: "gobinary", packageName: "stdlib", installedVersion: "v1.22.1" }],
    {},
  );
  assert.equal(go.findings[0]!.reason, "NotPatchable");
});

test("planLibraries - opted in: one update per package and place, at the highest fix its CVEs need", () => {
  const p = planLibraries(
    [urllib3("CVE-2021-33503", ["1.26.5"]), urllib3("CVE-2023-43804", ["1.26.17", "2.0.6"]), minimist],
    ON,
  );
  assert.deepEqual(p.updates, [
    {
      type: "node-pkg",
      name: "minimist",
      installedVersion: "1.2.5",
      fixedVersion: "1.2.6",
      path: "app/node_modules/minimist/package.json",
      vulnerabilityIDs: ["CVE-2021-44906"],
    },
    {
      type: "python-pkg",
      name: "urllib3",
      installedVersion: "1.26.4",
      fixedVersion: "1.26.17",
      path: `${SITE}/urllib3-1.26.4.dist-info/METADATA`,
      vulnerabilityIDs: ["CVE-2021-33503", "CVE-2023-43804"],
    },
  ]);
  assert.deepEqual(
    p.findings.map((f) => [f.cve, f.reason, f.fixedVersion]),
    [
      ["CVE-2021-33503", "Planned", "1.26.5"],
      ["CVE-2023-43804", "Planned", "1.26.17"],
      ["CVE-2021-44906", "Planned", "1.2.6"],
    ],
  );
  assert.match(p.findings[0]!.message, /from 1\.26\.4 to 1\.26\.17/);
});

test("planLibraries - a fix beyond the policy's level stays unpatched with why; the rest is patched", () => {
  const facts = [urllib3("CVE-2021-33503", ["1.26.5"]), urllib3("CVE-2025-50181", ["2.5.0"])];
  const p = planLibraries(facts, ON);
  assert.equal(p.updates.length, 1);
  assert.equal(p.updates[0]!.fixedVersion, "1.26.5");
  assert.deepEqual(p.updates[0]!.vulnerabilityIDs, ["CVE-2021-33503"]);
  const beyond = p.findings[1]!;
  assert.equal(beyond.reason, "BeyondPatchLevel");
  assert.match(beyond.message, /the fix 2\.5\.0 is a major update from 1\.26\.4; the policy allows patch/);
  const major = planLibraries(facts, { ...ON, patchLevel: "major" });
  assert.equal(major.updates[0]!.fixedVersion, "2.5.0");
  assert.deepEqual(
    major.findings.map((f) => f.reason),
    ["Planned", "Planned"],
  );
});

test("planLibraries - what copa cannot be given is NotPatchable with why; no fix is NoFixPublished", () => {
  const go: LibraryFact = {
    ...minimist,
    type: "gobinary",
    packageName: "stdlib",
    installedVersion: "v1.22.1",
  };
  const hostile = [
    { ...minimist, path: "../../etc/passwd" },
    { ...minimist, packageName: "$(reboot)" },
    { ...minimist, installedVersion: "not a version" },
    { ...minimist, fixedVersions: [] },
    { ...minimist, fixedVersions: ["1.2.4"] },
  ];
  const p = planLibraries([go, ...hostile], ON);
  assert.deepEqual(p.updates, []);
  assert.deepEqual(
    p.findings.map((f) => f.reason),
    ["NotPatchable", "NotPatchable", "NotPatchable", "NotPatchable", "NoFixPublished", "NotPatchable"],
  );
  assert.match(p.findings[0]!.message, /Python and Node\.js packages only/);
  assert.match(p.findings[1]!.message, /not a plain relative path/);
  // A platform of a multi-arch index: patched as one index, OS updates only.
  const idx = planLibraries([minimist], ON, true);
  assert.deepEqual(idx.updates, []);
  assert.match(idx.findings[0]!.message, /multi-arch index/);
});

test("library updates written by hand are checked as a report's are; over the CRD's limit the rest is listed", () => {
  const u = {
    type: "python-pkg" as const,
    name: "urllib3",
    installedVersion: "1.26.4",
    fixedVersion: "1.26.5",
  };
  assert.equal(libraryUpdateProblem(u), undefined);
  assert.match(libraryUpdateProblem({ ...u, name: "$(reboot)" })!, /not a python-pkg name/);
  assert.match(libraryUpdateProblem({ ...u, fixedVersion: "latest; rm" })!, /not a python-pkg version/);
  assert.match(libraryUpdateProblem({ ...u, path: "/etc/../passwd" })!, /not a plain relative path/);
  assert.match(libraryUpdateProblem({ ...u, type: "gobinary" as never })!, /not python-pkg or node-pkg/);
  const many: LibraryFact[] = Array.from({ length: MAX_LIBRARY_UPDATES + 2 }, (_, i) => ({
    ...minimist,
    packageName: `pkg-${String(i).padStart(4, "0")}`,
    path: `app/node_modules/pkg-${String(i).padStart(4, "0")}/package.json`,
  }));
  const p = planLibraries(many, ON);
  assert.equal(p.updates.length, MAX_LIBRARY_UPDATES);
  assert.deepEqual(
    p.findings.filter((f) => f.reason === "NotPatchable").map((f) => f.packageName),
    ["pkg-0500", "pkg-0501"],
  );
});
