import { test } from "node:test";
import assert from "node:assert/strict";
import { compareVersions, isValidVersion, type VersionScheme } from "./version.ts";

// Each row: a < b in that scheme (checked both ways, and each equals itself).
const ordered: Array<[VersionScheme, string, string]> = [
  // dpkg: deb-version(7) and dpkg's own test cases
  ["dpkg", "5.4.1-1+deb12u1", "5.4.1-1+deb12u2"],
  ["dpkg", "10.42-1", "10.42-1+deb12u2"],
  ["dpkg", "5.36.0-7+deb12u3", "5.36.0-7+deb12u4"],
  ["dpkg", "2.6.1", "2.6.2"],
  ["dpkg", "1.0~rc1", "1.0"],
  ["dpkg", "1.0~rc1-1", "1.0-1"],
  ["dpkg", "1.0~~", "1.0~"],
  ["dpkg", "1.0", "1.0+b1"],
  ["dpkg", "1.0-1", "1:0.9-1"],
  ["dpkg", "1.9", "1.10"],
  ["dpkg", "1.0a", "1.0+"],
  ["dpkg", "2026b-0+deb12u1", "2026f-0+deb12u1"],
  ["dpkg", "7.74.0-1.3+deb11u1", "7.74.0-1.3+deb11u2"],
  ["dpkg", "1.2.3-1", "1.2.3-1.1"],
  ["dpkg", "0.9", "0.10"],
  // apk: apk-tools ordering
  ["apk", "2.10.4-r3", "2.10.7-r0"],
  ["apk", "1.31.1-r9", "1.31.1-r10"],
  ["apk", "1.2.11-r3", "1.2.11-r4"],
  ["apk", "1.0_rc1", "1.0"],
  ["apk", "1.0_alpha1", "1.0_beta1"],
  ["apk", "1.0", "1.0_p1"],
  ["apk", "1.0", "1.0a"],
  ["apk", "1.0a", "1.0b"],
  ["apk", "1.9", "1.10"],
  ["apk", "1.1.1d-r3", "1.1.1g-r0"],
  ["apk", "3.11.3", "3.11.3-r1"],
  // rpm: rpmvercmp
  ["rpm", "1.0-1", "1.0-2"],
  ["rpm", "1.0", "1.0.1"],
  ["rpm", "1.0~rc1-1", "1.0-1"],
  ["rpm", "1.9-1", "1.10-1"],
  ["rpm", "1:1.0-1", "2:0.1-1"],
  ["rpm", "2.0.1-1.el8", "2.0.1-2.el8"],
  ["rpm", "1.0a", "1.0.1"],
  ["rpm", "1.0", "1.0^git1"],
  ["rpm", "3.0.8-2.cm2", "3.0.8-3.cm2"],
];

for (const [scheme, a, b] of ordered) {
  test(`version - ${scheme}: ${a} < ${b}`, () => {
    assert.ok(compareVersions(scheme, a, b) < 0, `${a} should sort before ${b}`);
    assert.ok(compareVersions(scheme, b, a) > 0, `${b} should sort after ${a}`);
    assert.equal(compareVersions(scheme, a, a), 0);
    assert.equal(compareVersions(scheme, b, b), 0);
  });
}

test("version - equal spellings compare equal", () => {
  assert.equal(compareVersions("dpkg", "0:1.0-1", "1.0-1"), 0);
  assert.equal(compareVersions("dpkg", "1.01", "1.1"), 0);
  assert.equal(compareVersions("rpm", "0:1.0-1", "1.0-1"), 0);
  assert.equal(compareVersions("rpm", "1.0-1", "1.0"), 0, "rpm ignores a missing release");
});

test("version - validity per scheme", () => {
  assert.ok(isValidVersion("dpkg", "1:2.3-4+deb12u1"));
  assert.ok(!isValidVersion("dpkg", ""));
  assert.ok(!isValidVersion("dpkg", "abc"));
  assert.ok(!isValidVersion("dpkg", "1.0 2"));
  assert.ok(isValidVersion("apk", "2.10.7-r0"));
  assert.ok(!isValidVersion("apk", "r0"));
  assert.ok(isValidVersion("rpm", "3.0.8-3.cm2"));
  assert.ok(!isValidVersion("rpm", "1.0;rm -rf"));
});

test("version - sorting a list picks the highest", () => {
  const vs = ["5.4.1-1+deb12u2", "5.4.1-1+deb12u10", "5.4.1-1+deb12u1", "5.4.1-1"];
  vs.sort((a, b) => compareVersions("dpkg", a, b));
  assert.deepEqual(vs, ["5.4.1-1", "5.4.1-1+deb12u1", "5.4.1-1+deb12u2", "5.4.1-1+deb12u10"]);
});
