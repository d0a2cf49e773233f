import { test } from "node:test";
import assert from "node:assert/strict";
import { convertReport, findingsHash, toUpdateManifest, countFindings } from "./convert.ts";
import { parseReport, type VulnerabilityReport } from "./report.ts";
import { alpineReportWithBody, clone, debianReport } from "../../test/fixtures/reports.ts";

function parsed(o: unknown): VulnerabilityReport {
  const r = parseReport(o);
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

test("convert - Debian report: one update per package at the highest fixed version", () => {
  const c = convertReport(parsed(debianReport()));
  assert.ok(c.ok);
  assert.deepEqual(c.value.os, { type: "debian", version: "12.15", scheme: "dpkg" });
  assert.equal(c.value.arch, "amd64");
  assert.deepEqual(
    c.value.updates.map((u) => [u.name, u.installedVersion, u.fixedVersion]),
    [
      ["liblzma5", "5.4.1-1+deb12u1", "5.4.1-1+deb12u2"],
      ["libpcre2-8-0", "10.42-1", "10.42-1+deb12u2"],
      ["perl-base", "5.36.0-7+deb12u3", "5.36.0-7+deb12u4"],
    ],
  );
  // The suppressed ncurses finding, the unfixed apt finding and the Go binary are not updates.
  assert.deepEqual(c.value.counts, { total: 6, fixable: 4, suppressed: 1, noFix: 1, langPkgs: 1, binary: 0 });
  assert.deepEqual(c.value.findings.map((f) => f.cve).sort(), [
    "CVE-2022-41409",
    "CVE-2024-56406",
    "CVE-2025-31115",
    "CVE-2025-58050",
  ]);
});

test("convert - native manifest in copa's v1alpha1 shape", () => {
  const c = convertReport(parsed(debianReport()));
  assert.ok(c.ok);
  const m = toUpdateManifest(c.value);
  assert.equal(m.apiVersion, "v1alpha1");
  assert.deepEqual(m.metadata, { os: { type: "debian", version: "12.15" }, config: { arch: "amd64" } });
  assert.equal(m.updates?.length, 3);
  assert.deepEqual(Object.keys(m.updates![0]!).sort(), [
    "fixedVersion",
    "installedVersion",
    "name",
    "vulnerabilityID",
  ]);
});

test("convert - arm variants other than arm64/v8 use v1alpha2 to carry the variant", () => {
  const o = clone(debianReport()) as any;
  o.imageMetadata.platform = "linux/arm/v7";
  const c = convertReport(parsed(o));
  assert.ok(c.ok);
  const m = toUpdateManifest(c.value);
  assert.equal(m.apiVersion, "v1alpha2");
  assert.deepEqual(m.metadata.config, { arch: "arm", variant: "v7" });
  assert.equal(m.osupdates?.[0]?.class, "os-pkgs");
  o.imageMetadata.platform = "linux/arm64/v8";
  const c2 = convertReport(parsed(o));
  assert.ok(c2.ok);
  assert.equal(toUpdateManifest(c2.value).apiVersion, "v1alpha1");
});

test("convert - real Alpine report: apk versions, VEX-suppressed CVEs excluded", () => {
  const plain = convertReport(parsed(alpineReportWithBody(false)));
  const vex = convertReport(parsed(alpineReportWithBody(true)));
  assert.ok(plain.ok && vex.ok);
  assert.deepEqual(plain.value.os, { type: "alpine", version: "3.11.3", scheme: "apk" });
  const apk = plain.value.updates.find((u) => u.name === "apk-tools");
  assert.equal(apk?.fixedVersion, "2.10.7-r0", "highest of 2.10.6-r0 and 2.10.7-r0");
  assert.ok(plain.value.findings.some((f) => f.cve === "CVE-2022-37434"));
  assert.ok(!vex.value.findings.some((f) => f.cve === "CVE-2022-37434"), "suppressed by VEX");
  assert.equal(vex.value.counts.suppressed, 1);
  assert.equal(vex.value.counts.total, plain.value.counts.total - 1);
  for (const u of plain.value.updates) assert.match(u.name, /^[a-zA-Z0-9][a-zA-Z0-9.+\-:~_]*$/);
});

test("convert - OS from the purl distro qualifier when type and target say nothing", () => {
  const o = clone(debianReport()) as any;
  o.report.results[0].target = "some/path";
  o.report.results[0].type = undefined;
  const c = convertReport(parsed(o));
  assert.ok(c.ok, !c.ok ? c.message : "");
  assert.deepEqual(c.value.os, { type: "debian", version: "12.15", scheme: "dpkg" });
});

test("convert - OS from the target suffix when purls carry no distro", () => {
  const o = clone(debianReport()) as any;
  for (const v of o.report.results[0].vulnerabilities) v.purl = undefined;
  const c = convertReport(parsed(o));
  assert.ok(c.ok);
  assert.equal(c.value.os.version, "12.15");
});

const refusals: Array<[string, (o: any) => void, string]> = [
  [
    "no os-pkgs result",
    (o) => (o.report.results = o.report.results.filter((r: any) => r.class !== "os-pkgs")),
    "NoOSPackages",
  ],
  [
    "an unknown OS",
    (o) => {
      o.report.results[0].type = "plan9";
    },
    "UnknownOS",
  ],
  [
    "an OS copa cannot patch (wolfi)",
    (o) => {
      o.report.results[0].type = "wolfi";
    },
    "UnsupportedOS",
  ],
  [
    "no OS version anywhere",
    (o) => {
      o.report.results[0].target = "x";
      for (const v of o.report.results[0].vulnerabilities) v.purl = undefined;
    },
    "UnknownOS",
  ],
];
for (const [what, mutate, reason] of refusals) {
  test(`convert - refuses ${what} with ${reason}, keeping the counts`, () => {
    const o = clone(debianReport());
    mutate(o);
    const c = convertReport(parsed(o));
    assert.equal(c.ok, false);
    if (!c.ok) {
      assert.equal(c.reason, reason);
      assert.ok(c.counts.total >= 1);
    }
  });
}

test("convert - fixed versions not newer than installed, invalid versions and bad names are dropped", () => {
  const o = clone(debianReport()) as any;
  const v = o.report.results[0].vulnerabilities;
  v[0].fixedVersions = ["5.4.1-1"]; // older than installed: already fixed on this branch
  v[1].fixedVersions = ["not a version"];
  v[3].packageName = "perl base; rm -rf /";
  const c = convertReport(parsed(o));
  assert.ok(c.ok);
  assert.deepEqual(
    c.value.updates.map((u) => u.name),
    ["libpcre2-8-0"],
  );
  assert.equal(c.value.updates[0]!.fixedVersion, "10.42-1+deb12u1");
});

test("convert - several fixed versions of one CVE: the lowest newer one (this branch's fix)", () => {
  const o = clone(debianReport()) as any;
  o.report.results[0].vulnerabilities[0].fixedVersions = ["5.6.0-1", "5.4.1-1+deb12u2"];
  const c = convertReport(parsed(o));
  assert.ok(c.ok);
  assert.equal(c.value.updates.find((u) => u.name === "liblzma5")?.fixedVersion, "5.4.1-1+deb12u2");
  o.report.results[0].vulnerabilities[0].fixedVersions = ["5.6.0-1, 5.4.1-1+deb12u2"];
  const c2 = convertReport(parsed(o));
  assert.ok(c2.ok);
  assert.equal(
    c2.value.updates.find((u) => u.name === "liblzma5")?.fixedVersion,
    "5.4.1-1+deb12u2",
    "comma-separated list",
  );
});

// ---- the fixable findings hash ----

function hashOf(o: unknown): string {
  const c = convertReport(parsed(o));
  assert.ok(c.ok);
  return c.value.findingsHash;
}

test("findings hash - stable under reordering and irrelevant changes", () => {
  const base = hashOf(debianReport());
  const variants: Array<[string, (o: any) => void]> = [
    [
      "results and vulnerabilities reordered",
      (o) => {
        o.report.results.reverse();
        o.report.results.forEach((r: any) => r.vulnerabilities.reverse());
      },
    ],
    [
      "descriptions and titles",
      (o) => {
        for (const v of o.report.results[0].vulnerabilities) {
          v.description = "changed";
          v.title = "changed";
        }
      },
    ],
    [
      "labels",
      (o) => {
        o.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = "another-scan";
      },
    ],
    [
      "resourceVersion and generation",
      (o) => {
        o.metadata.resourceVersion = "99999";
        o.metadata.generation = 7;
      },
    ],
    [
      "summary",
      (o) => {
        o.report.summary = { critical: 9 };
      },
    ],
    [
      "severity",
      (o) => {
        o.report.results[0].vulnerabilities[0].severity = "CRITICAL";
      },
    ],
    [
      "an unfixed finding added",
      (o) => {
        o.report.results[0].vulnerabilities.push({
          cve: "CVE-2099-1",
          packageName: "apt",
          installedVersion: "2.6.1",
          fixedVersions: [],
        });
      },
    ],
    [
      "a suppressed finding added",
      (o) => {
        o.report.results[0].vulnerabilities.push({
          cve: "CVE-2099-2",
          packageName: "zlib1g",
          installedVersion: "1",
          fixedVersions: ["2"],
          suppressed: true,
        });
      },
    ],
  ];
  for (const [what, mutate] of variants) {
    const o = clone(debianReport());
    mutate(o);
    assert.equal(hashOf(o), base, `hash moved on ${what}`);
  }
});

test("findings hash - changes when a fixable package, installed or fixed version changes", () => {
  const base = hashOf(debianReport());
  const variants: Array<[string, (o: any) => void]> = [
    [
      "a new fixable package",
      (o) => {
        o.report.results[0].vulnerabilities.push({
          cve: "CVE-2099-3",
          packageName: "zlib1g",
          installedVersion: "1:1.2.13.dfsg-1",
          fixedVersions: ["1:1.2.13.dfsg-1+deb12u1"],
        });
      },
    ],
    [
      "an installed version",
      (o) => {
        o.report.results[0].vulnerabilities[3].installedVersion = "5.36.0-7+deb12u2";
      },
    ],
    [
      "a fixed version",
      (o) => {
        o.report.results[0].vulnerabilities[0].fixedVersions = ["5.4.1-1+deb12u3"];
      },
    ],
    [
      "a package no longer fixable",
      (o) => {
        o.report.results[0].vulnerabilities.splice(3, 1);
      },
    ],
  ];
  for (const [what, mutate] of variants) {
    const o = clone(debianReport());
    mutate(o);
    assert.notEqual(hashOf(o), base, `hash did not move on ${what}`);
  }
});

test("findings hash - format", () => {
  assert.match(findingsHash([]), /^sha256:[a-f0-9]{64}$/);
  assert.equal(
    findingsHash([
      { name: "a", installedVersion: "1", fixedVersion: "2" },
      { name: "b", installedVersion: "1", fixedVersion: "2" },
    ]),
    findingsHash([
      { name: "b", installedVersion: "1", fixedVersion: "2" },
      { name: "a", installedVersion: "1", fixedVersion: "2" },
    ]),
  );
});

test("counts - a report with no results counts zero", () => {
  const o = clone(debianReport()) as any;
  o.report.results = [];
  assert.deepEqual(countFindings(parsed(o)), {
    total: 0,
    fixable: 0,
    suppressed: 0,
    noFix: 0,
    langPkgs: 0,
    binary: 0,
  });
});
