import { test } from "node:test";
import assert from "node:assert/strict";
import { parseReport, parsePlatform, ReportProblem } from "./report.ts";
import { alpineReport, alpineReportWithBody, clone, debianReport } from "../../test/fixtures/reports.ts";

test("report - parses the real sbomscanner example (Alpine)", () => {
  const r = parseReport(alpineReport());
  assert.ok(r.ok, !r.ok ? r.message : "");
  assert.equal(r.value.imageMetadata.repository, "kubewarden/sbomscanner/test-assets/golang");
  assert.equal(r.value.imageMetadata.platform, "linux/amd64");
  assert.ok((r.value.report.results?.[0]?.vulnerabilities?.length ?? 0) > 10);
});

test("report - parses real report bodies, keeping VEX suppression", () => {
  for (const vex of [false, true]) {
    const r = parseReport(alpineReportWithBody(vex));
    assert.ok(r.ok);
    const suppressed = r.value.report
      .results!.flatMap((x) => x.vulnerabilities!)
      .filter((v) => v.suppressed).length;
    assert.equal(suppressed, vex ? 1 : 0);
  }
});

test("report - tolerates unknown fields", () => {
  const o = debianReport();
  (o as Record<string, unknown>).somethingNew = { x: 1 };
  ((o.report as Record<string, unknown>).results as Array<Record<string, unknown>>)[0]!.extra = "y";
  assert.ok(parseReport(o).ok);
});

test("report - an empty or null results list is valid (nothing found)", () => {
  for (const results of [undefined, null, []]) {
    const o = clone(debianReport());
    (o.report as Record<string, unknown>).results = results;
    const r = parseReport(o);
    assert.ok(r.ok);
    assert.deepEqual(r.value.report.results, []);
  }
});

const malformed: Array<[string, (o: Record<string, any>) => unknown, ReportProblem]> = [
  ["not an object", () => "text", ReportProblem.NotAnObject],
  ["an array", () => [], ReportProblem.NotAnObject],
  ["null", () => null, ReportProblem.NotAnObject],
  ["another kind", (o) => ({ ...o, kind: "SBOM" }), ReportProblem.WrongKind],
  ["another apiVersion", (o) => ({ ...o, apiVersion: "v1" }), ReportProblem.WrongKind],
  ["no imageMetadata", (o) => ({ ...o, imageMetadata: undefined }), ReportProblem.MissingImageMetadata],
  [
    "no digest",
    (o) => ({ ...o, imageMetadata: { ...o.imageMetadata, digest: "" } }),
    ReportProblem.MissingDigest,
  ],
  [
    "a non-sha256 digest",
    (o) => ({ ...o, imageMetadata: { ...o.imageMetadata, digest: "md5:abc" } }),
    ReportProblem.InvalidDigest,
  ],
  [
    "a bad indexDigest",
    (o) => ({ ...o, imageMetadata: { ...o.imageMetadata, indexDigest: "sha256:xyz" } }),
    ReportProblem.InvalidDigest,
  ],
  [
    "no repository",
    (o) => ({ ...o, imageMetadata: { ...o.imageMetadata, repository: undefined } }),
    ReportProblem.MissingRepository,
  ],
  [
    "no registryURI",
    (o) => ({ ...o, imageMetadata: { ...o.imageMetadata, registryURI: 5 } }),
    ReportProblem.MissingRegistryURI,
  ],
  [
    "a bad platform",
    (o) => ({ ...o, imageMetadata: { ...o.imageMetadata, platform: "amd64" } }),
    ReportProblem.InvalidPlatform,
  ],
  ["no report", (o) => ({ ...o, report: undefined }), ReportProblem.MissingReport],
  ["results not a list", (o) => ({ ...o, report: { results: {} } }), ReportProblem.MalformedResults],
  ["a result not an object", (o) => ({ ...o, report: { results: [3] } }), ReportProblem.MalformedResults],
  [
    "vulnerabilities not a list",
    (o) => ({ ...o, report: { results: [{ vulnerabilities: "x" }] } }),
    ReportProblem.MalformedResults,
  ],
  [
    "a vulnerability with no cve",
    (o) => ({ ...o, report: { results: [{ vulnerabilities: [{}] }] } }),
    ReportProblem.MalformedResults,
  ],
  [
    "fixedVersions not a list",
    (o) => ({ ...o, report: { results: [{ vulnerabilities: [{ cve: "C", fixedVersions: "1.0" }] }] } }),
    ReportProblem.MalformedResults,
  ],
];

for (const [what, mutate, reason] of malformed) {
  test(`report - rejects ${what} with ${reason}`, () => {
    const r = parseReport(mutate(clone(debianReport())));
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.reason, reason);
      assert.ok(r.message.length > 5 && !r.message.includes("\n"), "one clear line");
    }
  });
}

test("report - platform parsing", () => {
  assert.deepEqual(parsePlatform("linux/amd64"), { os: "linux", architecture: "amd64" });
  assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
  assert.equal(parsePlatform("linux"), undefined);
  assert.equal(parsePlatform("linux/amd64/v2/x"), undefined);
});
