import { test } from "node:test";
import assert from "node:assert/strict";
import { summarizeReport } from "./facts.ts";
import { debianReport, alpineReportWithBody } from "../../test/fixtures/reports.ts";

test("cache - a report's summary keeps the facts and is a small fraction of the report", () => {
  const raw = alpineReportWithBody(false) as any;
  const s = summarizeReport(raw);
  assert.ok(s.facts?.conversion.ok);
  assert.equal(s.resourceVersion, raw.metadata.resourceVersion);
  assert.ok(
    JSON.stringify(s).length < JSON.stringify(raw).length / 5,
    `${JSON.stringify(s).length} vs ${JSON.stringify(raw).length}`,
  );
});

test("cache - an invalid report is summarised with its reason", () => {
  const raw = debianReport() as any;
  delete raw.imageMetadata;
  assert.deepEqual(summarizeReport(raw).invalid?.reason, "MissingImageMetadata");
});
