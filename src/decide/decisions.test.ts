// The reconcilers' decisions, as tables: what each of the three kinds of PatchJob gets
// for each situation, without an apiserver. Each row is one situation and the one
// action it must produce.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  API_VERSION,
  ConditionType,
  KIND,
  Phase,
  Reason,
  Source,
  parseReport,
  type PatchJob,
  type PatchJobStatus,
} from "../api/index.ts";
import { debianReport, debianReportWithPython, clone } from "../../test/fixtures/reports.ts";
import { SPEC_SCHEMA } from "../../test/support/decide.ts";
import type { Action, Gate } from "./actions.ts";
import { decidePublish, needsPublish } from "./actions.ts";
import { decideReport, type ReportInput } from "./decide-report.ts";
import { decideIndex } from "./decide-index.ts";
import { decideRequest } from "./decide-request.ts";
import { reportFacts, type ReportSummary } from "./facts.ts";
import { INDEX_GROUP_LABEL, INDEX_LABEL, patchJobNameForIndex } from "./grouping.ts";
import type { CompiledPolicy, PolicyVerdict } from "./policy.ts";

const NOW = new Date("2026-11-30T12:00:00Z");
const NAME = "9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";

function summary(mut?: (r: Record<string, any>) => void): ReportSummary {
  const raw = clone(debianReport()) as Record<string, any>;
  mut?.(raw);
  const p = parseReport(raw);
  if (!p.ok)
    return {
      deleting: false,
      resourceVersion: raw.metadata.resourceVersion,
      invalid: { reason: p.reason, message: p.message },
    };
  return {
    uid: raw.metadata.uid,
    resourceVersion: raw.metadata.resourceVersion,
    deleting: false,
    facts: reportFacts(p.value),
  };
}

const AUTO: PolicyVerdict = {
  kind: "patch",
  policy: { name: "default", namespace: "default" } as CompiledPolicy,
  settings: { name: "default", namespace: "default" },
};

function input(o: Partial<ReportInput> = {}): ReportInput {
  return {
    namespace: "default",
    name: NAME,
    report: summary(),
    reportsSynced: true,
    ownOutput: false,
    policy: AUTO,
    settings: {},
    schema: SPEC_SCHEMA,
    now: NOW,
    ...o,
  };
}

/** The PatchJob a create action would make, as the apiserver returns it (generation 1). */
function created(a: Action, status?: PatchJobStatus): PatchJob {
  assert.equal(a.kind, "create");
  if (a.kind !== "create") throw new Error("unreachable");
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      ...a.object.metadata,
      uid: "u-1",
      generation: 1,
      creationTimestamp: "2026-11-30T11:00:00Z" as never,
    },
    spec: a.object.spec,
    ...(status ? { status } : {}),
  };
}

test("decisions - a report, pass by pass: create, then publish with the counts, then nothing", () => {
  const first = decideReport(input());
  assert.equal(first.kind, "create");
  const pj = created(first);
  assert.equal(pj.metadata.labels?.["vulnpatcher.io/source"], "report");
  assert.deepEqual(pj.spec.policyRef, { name: "default", namespace: "default" });
  const second = decideReport(input({ current: pj }));
  assert.equal(second.kind, "publish");
  if (second.kind !== "publish") return;
  assert.equal(second.generation, 1);
  assert.equal(second.queued.phase, Phase.Queued);
  assert.deepEqual(second.queued.vulnerabilities?.before, { total: 6, fixable: 4 });
  const third = decideReport(input({ current: { ...pj, status: second.queued } }));
  assert.deepEqual([third.kind, third.kind === "none" && third.reason], ["none", "UpToDate"]);
});

test("decisions - a report's language-package findings are listed with the queued status, each with why (not patched)", () => {
  const report = summary((r) => {
    r.report.results.push({
      target: "app/package-lock.json",
      class: "lang-pkgs",
      type: "node-pkg",
      vulnerabilities: [
        {
          cve: "CVE-2021-44906",
          packageName: "minimist",
          installedVersion: "1.2.5",
          fixedVersions: ["1.2.6, 0.2.4"],
          packagePath: "app/node_modules/minimist/package.json",
          severity: "CRITICAL",
        },
        { cve: "CVE-2099-0001", packageName: "left-pad", installedVersion: "1.0.0", severity: "LOW" },
        {
          cve: "CVE-2099-0002",
          packageName: "ignored",
          installedVersion: "1.0.0",
          fixedVersions: ["1.0.1"],
          suppressed: true,
        },
      ],
    });
  });
  const pj = created(decideReport(input({ report })));
  const a = decideReport(input({ report, current: pj }));
  assert.ok(a.kind === "publish");
  assert.deepEqual(
    a.queued.libraries?.map((l) => [l.packageName, l.type, l.fixedVersion ?? "-", l.reason, l.path ?? "-"]),
    [
      ["left-pad", "node-pkg", "-", "NoFixPublished", "-"],
      ["minimist", "node-pkg", "1.2.6", "LibraryNotPatched", "app/node_modules/minimist/package.json"],
      ["stdlib", "gobinary", "1.22.7", "NotPatchable", "-"], // the fixture's Go binary: not given to copa
    ],
  );
  assert.match(a.queued.libraries![1]!.message, /update minimist to 1\.2\.6 in the image's build/);
  assert.deepEqual(a.queued.vulnerabilities?.before, { total: 8, fixable: 4 }, "the OS part as before");
});

test("decisions - a report: the situations that write nothing, and why", () => {
  const pj = created(decideReport(input()));
  const queued: PatchJob = { ...pj, status: { phase: Phase.Queued, observedGeneration: 1 } };
  const rows: Array<[string, Partial<ReportInput>, string]> = [
    ["no policy matches", { policy: { kind: "none" } }, "Policynone"],
    ["a Disabled policy", { policy: { kind: "disabled", policy: AUTO.policy } }, "Policydisabled"],
    [
      "a Scheduled policy between runs",
      { policy: { kind: "waiting", policy: AUTO.policy } },
      "Policywaiting",
    ],
    ["a scan of our own output", { ownOutput: true }, "OwnOutput"],
    [
      "a staging tag",
      { report: summary((r) => (r.imageMetadata.tag = "bookworm-vp-staging-arm64")) },
      "OwnOutput",
    ],
    ["a report being deleted", { report: { ...summary(), deleting: true } }, "Deleting"],
    [
      "a PatchJob made by hand under the same name",
      { current: { ...pj, spec: { ...pj.spec, source: Source.Manual } } },
      "NotOurs",
    ],
    ["already queued, same digest and findings", { current: queued }, "UpToDate"],
    [
      "nothing fixable",
      { report: summary((r) => (r.report.results[0].vulnerabilities = [])) },
      "NothingFixable",
    ],
  ];
  for (const [what, o, reason] of rows) {
    const a = decideReport(input(o));
    assert.equal(a.kind, "none", what);
    if (a.kind === "none") assert.equal(a.reason, reason, what);
  }
});

test("decisions - a report that changed: a new spec (the next pass publishes it), with an Event saying why", () => {
  const pj = created(decideReport(input()));
  const done: PatchJob = { ...pj, status: { phase: Phase.Succeeded, observedGeneration: 1 } };
  const rows: Array<[string, ReportSummary, string]> = [
    ["a new digest", summary((r) => (r.imageMetadata.digest = "sha256:" + "1".repeat(64))), "DigestChanged"],
    [
      "a new fixed version",
      summary((r) => (r.report.results[0].vulnerabilities[0].fixedVersions = ["9.9.9-1"])),
      "FindingsChanged",
    ],
  ];
  for (const [what, report, why] of rows) {
    const a = decideReport(input({ current: done, report }));
    assert.equal(a.kind, "updateSpec", what);
    if (a.kind === "updateSpec") {
      assert.equal(a.event?.reason, why, what);
      assert.match(a.event!.message, /generation 2/);
    }
  }
  const dry = decideReport(
    input({
      current: done,
      policy: { ...AUTO, settings: { ...AUTO.settings, dryRun: true } } as PolicyVerdict,
    }),
  );
  assert.equal(dry.kind === "updateSpec" && dry.event?.reason, "PolicyChanged");
});

test("decisions - a report's PatchJob goes to the queue, its index, or a plan; a closed gate waits", () => {
  const pj = created(decideReport(input()));
  const gate: Gate = { reason: Reason.PolicyLimit, message: "2 of 2 in flight", retryMs: 3000 };
  const gated = decideReport(input({ current: pj, gate: () => gate }));
  assert.equal(gated.kind, "status");
  if (gated.kind === "status") {
    assert.equal(gated.status.phase, Phase.Pending);
    assert.equal(gated.status.reason, Reason.PolicyLimit);
    assert.equal(gated.requeueAfterMs, 3000);
    const again = decideReport(input({ current: { ...pj, status: gated.status }, gate: () => gate }));
    assert.deepEqual(
      again,
      { kind: "requeue", afterMs: 3000, reason: gate.reason, message: gate.message },
      "said once",
    );
  }
  let asked = 0;
  decideReport(
    input({
      current: { ...pj, status: { phase: Phase.Succeeded, observedGeneration: 1 } },
      gate: () => (asked++, gate),
    }),
  );
  assert.equal(asked, 0, "the gate is asked only when publishing");

  const dryPj = created(
    decideReport(
      input({ policy: { ...AUTO, settings: { ...AUTO.settings, dryRun: true } } as PolicyVerdict }),
    ),
  );
  const plan = decideReport(
    input({
      current: dryPj,
      policy: { ...AUTO, settings: { ...AUTO.settings, dryRun: true } } as PolicyVerdict,
    }),
  );
  assert.equal(plan.kind === "status" && plan.status.phase, Phase.Planned);
  assert.ok(plan.kind === "status" && plan.status.plannedUpdates?.length);

  const idx = "sha256:" + "7".repeat(64);
  const member = summary((r) => (r.imageMetadata.indexDigest = idx));
  const m = created(decideReport(input({ report: member })));
  const group = patchJobNameForIndex(m.spec.image!);
  assert.equal(m.metadata.labels?.[INDEX_GROUP_LABEL], group, "labelled with its index");
  const handed = decideReport(input({ current: m, report: member }));
  assert.equal(handed.kind, "status");
  if (handed.kind === "status") {
    assert.equal(handed.status.reason, Reason.Grouped);
    assert.deepEqual(handed.enqueue, [`default/${group}`]);
  }
});

test("decisions - a report gone: wait for the list; cancel what no worker started; keep history of what ran", () => {
  const pj = created(decideReport(input()));
  assert.equal(decideReport(input({ report: undefined, current: pj, reportsSynced: false })).kind, "requeue");
  const rows: Array<[string, PatchJobStatus | undefined, string, string | undefined]> = [
    ["never published", undefined, Phase.Cancelled, Reason.ReportDeleted],
    ["queued", { phase: Phase.Queued, observedGeneration: 1 }, Phase.Cancelled, Reason.ReportDeleted],
    [
      "held by a gate",
      { phase: Phase.Pending, reason: Reason.PolicyLimit, observedGeneration: 1 },
      Phase.Cancelled,
      Reason.ReportDeleted,
    ],
    ["running", { phase: Phase.Running, observedGeneration: 1 }, Phase.Running, undefined],
    ["succeeded", { phase: Phase.Succeeded, observedGeneration: 1 }, Phase.Succeeded, undefined],
    [
      "grouped into its index",
      { phase: Phase.Queued, reason: Reason.Grouped, observedGeneration: 1 },
      Phase.Queued,
      Reason.Grouped,
    ],
  ];
  for (const [what, status, phase, reason] of rows) {
    const a = decideReport(input({ report: undefined, current: { ...pj, ...(status ? { status } : {}) } }));
    assert.equal(a.kind, "status", what);
    if (a.kind !== "status") continue;
    assert.equal(a.status.phase, phase, what);
    if (reason) assert.equal(a.status.reason, reason, what);
    assert.equal(
      a.status.conditions?.find((c) => c.type === ConditionType.SourceAvailable)?.status,
      "False",
      what,
    );
    assert.equal(a.event?.reason, Reason.ReportDeleted, what);
    const again = decideReport(input({ report: undefined, current: { ...pj, status: a.status } }));
    assert.equal(again.kind, "none", `${what}: said once`);
  }
  // The report comes back: a cancelled PatchJob is patched after all.
  const cancelled = decideReport(input({ report: undefined, current: pj }));
  assert.ok(cancelled.kind === "status");
  const back = decideReport(input({ current: { ...pj, status: cancelled.status } }));
  assert.equal(back.kind === "updateSpec" && back.event?.reason, "ReportRestored");
});

test("decisions - an invalid report: a PatchJob naming only the report, then Invalid with the reason, once", () => {
  const bad = summary((r) => delete r.imageMetadata);
  const a = decideReport(input({ report: bad }));
  const pj = created(a);
  assert.equal(pj.spec.image, undefined);
  assert.equal(pj.spec.reportRef?.name, NAME);
  const b = decideReport(input({ report: bad, current: pj }));
  assert.equal(b.kind === "status" && b.status.phase, Phase.Invalid);
  if (b.kind !== "status") return;
  assert.equal(b.event?.type, "Warning");
  assert.equal(decideReport(input({ report: bad, current: { ...pj, status: b.status } })).kind, "none");
  // A PatchJob that patched an earlier, valid report keeps its history: only an Event.
  const good = created(decideReport(input()));
  const c = decideReport(
    input({
      report: { ...bad, resourceVersion: "9999" },
      current: { ...good, status: { phase: Phase.Succeeded, observedGeneration: 1 } },
    }),
  );
  assert.equal(c.kind, "event");
});

function member(arch: string, o: { created?: string; generation?: number } = {}): PatchJob {
  const s = summary((r) => {
    r.metadata.name = `r-${arch}`;
    r.imageMetadata.platform = `linux/${arch}`;
    r.imageMetadata.digest = "sha256:" + (arch === "amd64" ? "a" : "b").repeat(64);
    r.imageMetadata.indexDigest = "sha256:" + "7".repeat(64);
  });
  const pj = created(decideReport(input({ name: `r-${arch}`, report: s })));
  return {
    ...pj,
    metadata: {
      ...pj.metadata,
      generation: o.generation ?? 1,
      creationTimestamp: (o.created ?? "2026-11-30T11:00:00Z") as never,
    },
    status: {
      phase: Phase.Queued,
      reason: Reason.Grouped,
      observedGeneration: 1,
      vulnerabilities: { before: { total: 6, fixable: 4 } },
    },
  };
}

test("decisions - an index: wait for its platforms to settle, create, publish with the summed counts, re-plan on change", () => {
  const members = [member("amd64"), member("arm64")];
  const name = patchJobNameForIndex(members[0]!.spec.image!);
  const base = { namespace: "default", name, settings: {}, now: NOW };
  assert.equal(decideIndex({ ...base, members: [] }).kind, "none");
  const early = decideIndex({ ...base, members: [member("amd64", { created: "2026-11-30T11:59:55Z" })] });
  assert.equal(early.kind, "requeue", "the newest platform is 5 s old: wait for the others");
  const c = decideIndex({ ...base, members });
  assert.equal(c.kind, "create");
  const index = created(c);
  assert.equal(index.metadata.labels?.[INDEX_LABEL], "true");
  assert.deepEqual(
    index.spec.platforms?.map((p) => p.platform),
    ["linux/amd64", "linux/arm64"],
  );
  const p = decideIndex({ ...base, members, current: index });
  assert.equal(p.kind, "publish");
  if (p.kind === "publish") assert.deepEqual(p.queued.vulnerabilities?.before, { total: 12, fixable: 8 });
  const queued = { ...index, status: p.kind === "publish" ? p.queued : {} };
  assert.equal(decideIndex({ ...base, members, current: queued }).kind, "none");
  const moved = decideIndex({
    ...base,
    members: [members[0]!, member("arm64", { generation: 2 })],
    current: queued,
  });
  assert.equal(moved.kind === "updateSpec" && moved.event?.reason, "PlatformsChanged");
});

test("decisions - a request (made by hand or by a policy): queued once per generation, with an Event; a report's PatchJob is not its business", () => {
  const pj: PatchJob = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: "manual-1", namespace: "default", uid: "u", generation: 1 },
    spec: {
      source: Source.Manual,
      image: { registryURI: "r", repository: "x", tag: "1", platform: "linux/amd64" },
    },
  };
  assert.equal(decideRequest({ now: NOW }).kind, "none");
  const a = decideRequest({ current: pj, now: NOW });
  assert.equal(a.kind, "publish");
  if (a.kind !== "publish") return;
  assert.equal(a.event?.reason, "Queued");
  assert.equal(decideRequest({ current: { ...pj, status: a.queued }, now: NOW }).kind, "none");
  assert.equal(
    decideRequest({
      current: { ...pj, metadata: { ...pj.metadata, generation: 2 }, status: a.queued },
      now: NOW,
    }).kind,
    "publish",
  );
  assert.equal(
    decideRequest({ current: { ...pj, spec: { ...pj.spec, source: Source.Report } }, now: NOW }).kind,
    "none",
  );
});

test("decisions - publishing a new generation drops the last one's results and starts its attempts again", () => {
  const pj: PatchJob = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: "x", namespace: "default", generation: 2 },
    spec: { source: Source.Manual },
    status: {
      phase: Phase.Succeeded,
      observedGeneration: 1,
      attempts: 3,
      patchedImage: { reference: "r/x:1-patched", digest: "sha256:1" },
      fixedCVEs: ["CVE-1"],
      conditions: [
        { type: "Queued", status: "True", reason: "Published", message: "", lastTransitionTime: "t" },
      ],
    },
  };
  assert.equal(needsPublish(pj), true);
  const a = decidePublish(pj, { before: { total: 2, fixable: 1 }, now: NOW });
  assert.equal(a.kind, "publish");
  if (a.kind !== "publish") return;
  assert.equal(a.queued.patchedImage, undefined);
  assert.equal(a.queued.fixedCVEs, undefined);
  assert.equal(a.queued.attempts, undefined);
  assert.equal(a.queued.observedGeneration, 2);
  assert.deepEqual(a.queued.vulnerabilities, { before: { total: 2, fixable: 1 } });
  assert.equal(a.queued.conditions?.length, 1, "conditions are kept (and updated)");
});

test("decisions - tenancy: a refused PatchJob of any kind ends Denied once, with the reason; a grant later lets it through", () => {
  const refused = {
    ok: false as const,
    reason: Reason.TargetNotAllowed,
    message: "namespace default may push ... TenantGrant",
  };
  const allowed = { ok: true as const };
  // A request.
  const req: PatchJob = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: "manual-1", namespace: "default", uid: "u", generation: 1 },
    spec: {
      source: Source.Manual,
      image: { registryURI: "r", repository: "x", tag: "1", platform: "linux/amd64" },
    },
  };
  const denied = decideRequest({ current: req, tenancy: () => refused, now: NOW });
  assert.equal(denied.kind, "status");
  if (denied.kind !== "status") return;
  assert.deepEqual(
    [denied.status.phase, denied.status.reason, denied.status.message],
    [Phase.Denied, Reason.TargetNotAllowed, refused.message],
  );
  assert.equal(denied.status.observedGeneration, 1);
  assert.equal(denied.event?.type, "Warning");
  const again = decideRequest({
    current: { ...req, status: denied.status },
    tenancy: () => refused,
    now: NOW,
  });
  assert.deepEqual(
    [again.kind, again.kind === "none" && again.reason],
    ["none", Reason.TargetNotAllowed],
    "recorded once",
  );
  // The gate is not asked for a refused PatchJob.
  let gateAsked = 0;
  decideRequest({ current: req, tenancy: () => refused, gate: () => (gateAsked++, undefined), now: NOW });
  assert.equal(gateAsked, 0);
  const granted = decideRequest({
    current: { ...req, status: denied.status },
    tenancy: () => allowed,
    now: NOW,
  });
  assert.equal(granted.kind, "publish", "a Denied PatchJob is looked at again, and published once allowed");
  // A report's PatchJob: Denied before publishing (and before it is handed to an index).
  const pj = created(decideReport(input()));
  const r = decideReport(input({ current: pj, tenancy: () => refused }));
  assert.equal(r.kind, "status");
  if (r.kind !== "status") return;
  assert.equal(r.status.phase, Phase.Denied);
  assert.deepEqual(
    r.status.vulnerabilities?.before,
    { total: 6, fixable: 4 },
    "the counts are still recorded",
  );
  // A dry run reads and pushes nothing: it is planned whatever the rules say.
  const DRY: PolicyVerdict = {
    ...AUTO,
    settings: { ...(AUTO.kind === "patch" ? AUTO.settings : {}), dryRun: true },
  } as PolicyVerdict;
  const dry = created(decideReport(input({ policy: DRY })));
  assert.equal(dry.spec.dryRun, true);
  const plan = decideReport(input({ current: dry, policy: DRY, tenancy: () => refused }));
  assert.equal(plan.kind === "status" && plan.status.phase, Phase.Planned);
});

test("decisions - a finished PatchJob whose status lost the report's other library findings (a worker claimed it first) gets them added, once, the worker's outcomes kept", () => {
  const report = summary((r) =>
    r.report.results.push(
      (debianReportWithPython() as { report: { results: unknown[] } }).report.results.at(-1),
    ),
  );
  // Two urllib3 CVEs: one patched at 1.26.5, one whose fix (2.5.0) is beyond the patch level.
  const python = report.facts!.libraries.find((f) => f.packageName === "urllib3")!;
  report.facts!.libraries.push({ ...python, cve: "CVE-2025-50181", fixedVersions: ["2.5.0"] });
  const policy: PolicyVerdict = {
    ...AUTO,
    kind: "patch",
    settings: { name: "default", namespace: "default", libraries: { packageTypes: ["os", "library"] } },
  } as PolicyVerdict;
  const pj = created(decideReport(input({ report, policy })));
  const fixed = {
    cve: "CVE-2021-33503",
    type: "python-pkg",
    packageName: "urllib3",
    installedVersion: "1.26.4",
    fixedVersion: "1.26.5",
    path: python.path,
    reason: "Fixed" as const,
    message: "the patched image holds urllib3 1.26.5 (fix 1.26.5)",
  };
  const done: PatchJob = {
    ...pj,
    status: { phase: Phase.Succeeded, observedGeneration: 1, libraries: [fixed] },
  };
  const a = decideReport(input({ report, policy, current: done }));
  assert.ok(a.kind === "status", a.kind);
  assert.deepEqual(
    a.status.libraries?.map((f) => [f.cve, f.reason]),
    [
      ["CVE-2021-33503", "Fixed"],
      ["CVE-2024-34156", "NotPatchable"], // the fixture's Go binary
      ["CVE-2025-50181", "BeyondPatchLevel"],
    ],
  );
  assert.equal(a.status.phase, "Succeeded");
  const again = decideReport(input({ report, policy, current: { ...done, status: a.status } }));
  assert.equal(again.kind, "none", "nothing more to add");
});
