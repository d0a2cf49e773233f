import { test } from "node:test";
import assert from "node:assert/strict";
import { adhocSpec } from "./adhoc.ts";
import { summarizeReport, type ReportSummary } from "../decide/index.ts";
import type { Store } from "../kube/index.ts";
import { debianReport, debianReportWithPython } from "../../test/fixtures/reports.ts";
import { HttpError } from "./respond.ts";

/** The Debian fixture with a Python package finding. */
function store(withPython: boolean): Store<ReportSummary> {
  const raw = (withPython ? debianReportWithPython() : debianReport()) as {
    metadata: { namespace: string; name: string };
  };
  const summary = summarizeReport(raw as never);
  const key = `${raw.metadata.namespace}/${raw.metadata.name}`;
  return { get: (k: string) => (k === key ? summary : undefined) } as unknown as Store<ReportSummary>;
}
const NS = (debianReport() as { metadata: { namespace: string } }).metadata.namespace;
const NAME = (debianReport() as { metadata: { name: string } }).metadata.name;
const allow = async () => {};

test("ad-hoc patch of a report - packageTypes and libraryPatchLevel as a policy has them; OS only by default", async () => {
  const plain = await adhocSpec(NS, { report: NAME }, store(true), allow);
  assert.equal(plain.libraryUpdates, undefined);
  assert.ok((plain.updates?.length ?? 0) > 0);
  const both = await adhocSpec(NS, { report: NAME, packageTypes: ["os", "library"] }, store(true), allow);
  assert.deepEqual(
    both.libraryUpdates?.map((u) => [u.name, u.fixedVersion]),
    [["urllib3", "1.26.5"]],
  );
  assert.equal(both.updates?.length, plain.updates?.length);
  const libOnly = await adhocSpec(NS, { report: NAME, packageTypes: ["library"] }, store(true), allow);
  assert.equal(libOnly.updates, undefined, "no OS list: an empty one would mean update everything");
});

test("ad-hoc patch of a report - bad library settings are a 400; libraries alone with none to patch a 422", async () => {
  const status = async (body: Record<string, unknown>, withPython = true) => {
    try {
      await adhocSpec(NS, { report: NAME, ...body }, store(withPython), allow);
      return 200;
    } catch (err) {
      assert.ok(err instanceof HttpError, String(err));
      return err.status;
    }
  };
  assert.equal(await status({ packageTypes: ["os", "go"] }), 400);
  assert.equal(await status({ packageTypes: "library" }), 400);
  assert.equal(await status({ libraryPatchLevel: "huge" }), 400);
  assert.equal(await status({ packageTypes: ["library"] }, false), 422);
});

test("ad-hoc patch of a report with nothing fixable - a 422 that says so, never a spec without updates (update everything)", async () => {
  const raw = debianReport() as { report: { results: Array<{ class: string; vulnerabilities: unknown[] }> } };
  for (const r of raw.report.results) if (r.class === "os-pkgs") r.vulnerabilities = [];
  const summary = summarizeReport(raw as never);
  const one = { get: () => summary } as unknown as Store<ReportSummary>;
  await assert.rejects(adhocSpec(NS, { report: NAME }, one, allow), (err: HttpError) => {
    assert.equal(err.status, 422);
    assert.match(err.message, /lists nothing fixable/);
    return true;
  });
});

test("ad-hoc patch of an image - library settings without a report are a 400 (an image alone is update-all)", async () => {
  await assert.rejects(
    adhocSpec(NS, { image: "r.example/app:1", packageTypes: ["library"] }, store(false), allow),
    (err: HttpError) => err.status === 400 && /go with "report"/.test(err.message),
  );
});
