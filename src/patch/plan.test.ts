import { test } from "node:test";
import assert from "node:assert/strict";
import { planUpdates, verifyUpdates } from "./plan.ts";
import type { PackageDB } from "../registry/index.ts";

const updates = [
  {
    name: "liblzma5",
    installedVersion: "5.4.1-1+deb12u1",
    fixedVersion: "5.4.1-1+deb12u2",
    vulnerabilityIDs: ["CVE-2025-31115"],
  },
  {
    name: "perl-base",
    installedVersion: "5.36.0-7+deb12u3",
    fixedVersion: "5.36.0-7+deb12u4",
    vulnerabilityIDs: ["CVE-2024-56406"],
  },
  {
    name: "libpcre2-8-0",
    installedVersion: "10.42-1",
    fixedVersion: "10.42-1+deb12u2",
    vulnerabilityIDs: ["CVE-2022-41409", "CVE-2025-58050"],
  },
];

function db(entries: Record<string, string>, format: PackageDB["format"] = "dpkg"): PackageDB {
  return { format, packages: new Map(Object.entries(entries)) };
}

test("plan - drops updates the image already satisfies, keeps the rest", () => {
  const p = planUpdates(
    updates,
    db({ liblzma5: "5.4.1-1+deb12u2", "perl-base": "5.36.0-7+deb12u3", "libpcre2-8-0": "10.42-1+deb12u3" }),
  );
  assert.deepEqual(
    p.needed.map((u) => u.name),
    ["perl-base"],
  );
  assert.deepEqual(
    p.satisfied.map((u) => u.name),
    ["liblzma5", "libpcre2-8-0"],
  );
  assert.deepEqual(p.absent, []);
});

test("plan - everything satisfied means nothing needed (a no-op, no copa run)", () => {
  const p = planUpdates(
    updates,
    db({ liblzma5: "5.4.1-1+deb12u2", "perl-base": "5.36.0-7+deb12u4", "libpcre2-8-0": "10.42-1+deb12u2" }),
  );
  assert.equal(p.needed.length, 0);
  assert.equal(p.satisfied.length, 3);
});

test("plan - packages the image does not have are absent, not needed", () => {
  const p = planUpdates(updates, db({ liblzma5: "5.4.1-1+deb12u1" }));
  assert.deepEqual(
    p.needed.map((u) => u.name),
    ["liblzma5"],
  );
  assert.deepEqual(
    p.absent.map((u) => u.name),
    ["perl-base", "libpcre2-8-0"],
  );
});

test("plan - the installed version in the plan is the image's, not the report's", () => {
  const p = planUpdates(updates.slice(0, 1), db({ liblzma5: "5.4.1-1" }));
  assert.equal(p.needed[0]?.installedVersion, "5.4.1-1");
});

test("plan - an unreadable package database trusts the report", () => {
  const p = planUpdates(updates, db({}, "unknown"));
  assert.equal(p.needed.length, 3);
});

test("verify - fixed, remaining, fixed CVEs and what changed", () => {
  const before = db({
    liblzma5: "5.4.1-1+deb12u1",
    "perl-base": "5.36.0-7+deb12u3",
    "libpcre2-8-0": "10.42-1",
    apt: "2.6.1",
  });
  const after = db({
    liblzma5: "5.4.1-1+deb12u2",
    "perl-base": "5.36.0-7+deb12u3",
    "libpcre2-8-0": "10.42-1+deb12u2",
    apt: "2.6.2",
  });
  const v = verifyUpdates(updates, after, before);
  assert.deepEqual(
    v.fixed.map((u) => u.name),
    ["liblzma5", "libpcre2-8-0"],
  );
  assert.deepEqual(
    v.remaining.map((u) => u.name),
    ["perl-base"],
  );
  assert.deepEqual(v.fixedCVEs, ["CVE-2022-41409", "CVE-2025-31115", "CVE-2025-58050"]);
  assert.deepEqual(
    v.changed.map((c) => c.name),
    ["apt", "liblzma5", "libpcre2-8-0"],
  );
});

test("verify - apk images", () => {
  const v = verifyUpdates(
    [
      {
        name: "apk-tools",
        installedVersion: "2.10.4-r3",
        fixedVersion: "2.10.7-r0",
        vulnerabilityIDs: ["CVE-2021-36159"],
      },
    ],
    db({ "apk-tools": "2.10.8-r0" }, "apk"),
  );
  assert.deepEqual(v.fixedCVEs, ["CVE-2021-36159"]);
});
