import { test } from "node:test";
import assert from "node:assert/strict";
import type { LibraryFinding, LibraryUpdate } from "../api/index.ts";
import { librariesAfter, librariesFailed } from "./library-status.ts";

const U: LibraryUpdate = {
  type: "python-pkg",
  name: "urllib3",
  installedVersion: "1.26.4",
  fixedVersion: "1.26.5",
  vulnerabilityIDs: ["CVE-2021-33503"],
};
const planned = (cve: string, name = "urllib3"): LibraryFinding => ({
  cve,
  type: "python-pkg",
  packageName: name,
  installedVersion: "1.26.4",
  fixedVersion: "1.26.5",
  reason: "Planned",
  message: "copa updates it",
});
const beyond: LibraryFinding = {
  ...planned("CVE-2025-50181"),
  fixedVersion: "2.5.0",
  reason: "BeyondPatchLevel",
  message: "major",
};
const none = { fixed: [], notFixed: [], notPatchable: [], satisfied: [], absent: [] };

test("libraries after a patch - each Planned finding of an update says what became of it; the others stay", () => {
  const fixed = librariesAfter([planned("CVE-2021-33503"), beyond], {
    ...none,
    fixed: [{ ...U, version: "1.26.5" }],
  });
  assert.deepEqual(
    fixed.map((f) => [f.cve, f.reason]),
    [
      ["CVE-2021-33503", "Fixed"],
      ["CVE-2025-50181", "BeyondPatchLevel"],
    ],
  );
  assert.match(fixed[0]!.message, /holds urllib3 1\.26\.5/);
  const copaFailed = librariesAfter([planned("CVE-2021-33503")], {
    ...none,
    notPatchable: [U],
    notPatchableReason: "pip: no such version",
  });
  assert.equal(copaFailed[0]!.reason, "NotPatchable");
  assert.match(copaFailed[0]!.message, /pip: no such version/);
  const below = librariesAfter([planned("CVE-2021-33503")], {
    ...none,
    notFixed: [{ ...U, version: "1.26.4" }],
  });
  assert.equal(below[0]!.reason, "NotFixed");
  // A PatchJob made by hand lists nothing: its updates' findings are added.
  assert.deepEqual(
    librariesAfter(undefined, { ...none, absent: [U] }).map((f) => [f.cve, f.reason]),
    [["CVE-2021-33503", "NotPatchable"]],
  );
});

test("libraries after a failed patch - what was Planned is NotFixed with the failure; nothing else changes", () => {
  const out = librariesFailed([planned("CVE-2021-33503"), beyond], "copa timed out");
  assert.deepEqual(
    out?.map((f) => f.reason),
    ["NotFixed", "BeyondPatchLevel"],
  );
  assert.match(out![0]!.message, /the patch failed: copa timed out/);
  assert.equal(librariesFailed(undefined, "x"), undefined);
});
