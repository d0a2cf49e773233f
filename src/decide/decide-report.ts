// The decision for a report: which spec its PatchJob should have (decideFacts), and the
// one thing the report reconciler does about it now (decideReport). Pure.
import {
  ConditionType,
  type Conversion,
  type LibraryFinding,
  type LibraryPlan,
  LibraryReason,
  isFinished,
  MAX_LIBRARY_FINDINGS,
  type LibrarySettings,
  findingsHash,
  planLibraries,
  DEFAULT_TAG_SUFFIX,
  DEFAULT_TIMEOUT,
  getCondition,
  type ImageSpec,
  markCancelled,
  markInvalid,
  markPlanned,
  markFailed,
  endOfLife,
  markSourceGone,
  type PatchJob,
  type PatchJobSpec,
  Phase,
  Reason,
  type SchemaNode,
  Source,
  specProblems,
  statusForGeneration,
  type VulnerabilityCounts,
} from "../api/index.ts";
import { isPatchedTag, isStagingTag, patchJobNameForReport } from "./naming.ts";
import type { ReportFacts, ReportSummary } from "./facts.ts";
import {
  create,
  decideDenied,
  decidePublish,
  needsPublish,
  none,
  type Action,
  type Gate,
} from "./actions.ts";
import type { TenancyVerdict } from "./tenancy.ts";
import { INDEX_GROUP_LABEL, isIndexPatchJob, markGrouped, patchJobNameForIndex } from "./grouping.ts";
import { describePlan, policyLibraries, type PolicyVerdict } from "./policy.ts";

export interface DecideSettings {
  /** @default "-patched" */
  tagSuffix?: string;
  /** @default "10m" */
  timeout?: string;
  /** @default false */
  ignoreErrors?: boolean;
  /** Patch the platforms of a multi-arch index together, as one index. @default true */
  groupIndexes?: boolean;
  /** Without a policy (an ad-hoc patch of a report): which package types, how far a library may move. */
  libraries?: LibrarySettings;
  /** The PatchPolicy chosen for the report (none: the controller's settings alone). */
  policy?: {
    name: string;
    namespace: string;
    dryRun?: boolean;
    target?: { reference?: string; tagSuffix?: string };
    /** Which package types it patches, and how far a library may move. */
    libraries?: LibrarySettings;
  };
}

export const SkipReason = {
  OwnPatchedImage: "OwnPatchedImage",
  NothingFixable: "NothingFixable",
  NoOSPackages: "NoOSPackages",
  UnknownOS: "UnknownOS",
  UnsupportedOS: "UnsupportedOS",
  InvalidPlatform: "InvalidPlatform",
  Deleting: "Deleting",
} as const;
export type SkipReason = (typeof SkipReason)[keyof typeof SkipReason];

export const LeaveReason = {
  UpToDate: "UpToDate",
  NotOurs: "NotOurs",
  Skipped: "Skipped",
} as const;
export type LeaveReason = (typeof LeaveReason)[keyof typeof LeaveReason];

export type UpdateWhy = "DigestChanged" | "FindingsChanged" | "PolicyChanged" | "ReportRestored";

/** The spec of a report's PatchJob: always with an image. */
export type ReportPatchSpec = PatchJobSpec & { image: ImageSpec };

export type Decision =
  | { action: "create"; name: string; spec: ReportPatchSpec; before: VulnerabilityCounts["before"] }
  | {
      action: "update";
      name: string;
      spec: ReportPatchSpec;
      before: VulnerabilityCounts["before"];
      why: UpdateWhy;
    }
  | { action: "leave"; name: string; reason: LeaveReason; message: string }
  | { action: "skip"; reason: SkipReason; message: string }
  /** The report cannot become a patch (hostile, malformed or oversized content): record why. */
  | { action: "invalid"; name: string; reason: string; message: string };

export function specFromReport(
  report: Pick<ReportFacts, "metadata" | "imageMetadata">,
  conv: Conversion,
  settings: DecideSettings = {},
  libraries: LibraryPlan["updates"] = [],
): ReportPatchSpec {
  const im = report.imageMetadata;
  const cves = new Map<string, string[]>();
  for (const f of conv.findings) cves.set(f.packageName, [...(cves.get(f.packageName) ?? []), f.cve]);
  const os = patchesOS(settings);
  const updates = os
    ? conv.updates.map((u) => ({
        name: u.name,
        installedVersion: u.installedVersion,
        fixedVersion: u.fixedVersion,
        vulnerabilityIDs: [...new Set(cves.get(u.name) ?? [u.vulnerabilityID])].sort(),
      }))
    : [];
  return {
    image: {
      registryURI: im.registryURI,
      repository: im.repository,
      ...(im.tag ? { tag: im.tag } : {}),
      digest: im.digest,
      ...(im.indexDigest ? { indexDigest: im.indexDigest } : {}),
      platform: im.platform,
    },
    source: Source.Report,
    reportRef: {
      namespace: report.metadata.namespace ?? "",
      name: report.metadata.name ?? "",
      ...(report.metadata.uid ? { uid: report.metadata.uid } : {}),
      ...(report.metadata.resourceVersion ? { resourceVersion: report.metadata.resourceVersion } : {}),
    },
    os: { type: conv.os.type, version: conv.os.version },
    // OS updates alone hash as they always did (no PatchJob is patched again for this change).
    findingsHash:
      os && libraries.length === 0
        ? conv.findingsHash
        : findingsHash([
            ...(os ? conv.updates : []),
            ...libraries.map((l) => ({ ...l, name: `${l.type}:${l.path ?? ""}:${l.name}` })),
          ]),
    ...(os || libraries.length === 0 ? { updates } : {}),
    ...(libraries.length ? { libraryUpdates: libraries } : {}),
    target: settings.policy?.target ?? { tagSuffix: settings.tagSuffix ?? DEFAULT_TAG_SUFFIX },
    options: { ignoreErrors: settings.ignoreErrors ?? false, timeout: settings.timeout ?? DEFAULT_TIMEOUT },
    ...(settings.policy
      ? { policyRef: { name: settings.policy.name, namespace: settings.policy.namespace } }
      : {}),
    ...(settings.policy?.dryRun ? { dryRun: true } : {}),
  };
}

/**
 * The spec a report's PatchJob should have, compared with the one it has: create,
 * update (and why), leave, skip, or record the report as invalid. `schema` is the CRD's
 * spec schema (loaded once at start): everything in the spec came from the report.
 */
export function decideFacts(
  report: ReportFacts,
  existing: PatchJob | undefined,
  settings: DecideSettings,
  schema: SchemaNode,
): Decision {
  const name = patchJobNameForReport(report.metadata.name ?? "");
  const suffix = settings.tagSuffix ?? DEFAULT_TAG_SUFFIX;
  if (report.metadata.deletionTimestamp)
    return { action: "skip", reason: SkipReason.Deleting, message: "the report is being deleted" };
  if (isPatchedTag(report.imageMetadata.tag, suffix)) {
    return {
      action: "skip",
      reason: SkipReason.OwnPatchedImage,
      message: `tag ${report.imageMetadata.tag} is a patched image (suffix ${suffix})`,
    };
  }
  if (existing && existing.spec.source !== Source.Report) {
    return {
      action: "leave",
      name,
      reason: LeaveReason.NotOurs,
      message: `PatchJob ${name} was created by source ${existing.spec.source}`,
    };
  }
  const conv = report.conversion;
  if (!conv.ok) {
    const malformed = conv.reason === "MalformedFindings";
    if (existing?.spec.image || (existing && !malformed))
      return { action: "leave", name, reason: LeaveReason.Skipped, message: conv.message };
    if (conv.reason === "MalformedFindings")
      return { action: "invalid", name, reason: "InvalidReport", message: conv.message };
    return { action: "skip", reason: conv.reason, message: conv.message };
  }
  const libs = libraryPlanFor(report, settings);
  if ((patchesOS(settings) ? conv.value.updates.length : 0) + libs.updates.length === 0) {
    const message = `nothing fixable: ${conv.value.counts.total} vulnerabilities, none with a fixed ${settings.policy?.libraries?.packageTypes?.join(" or ") ?? "OS"} package newer than installed`;
    if (existing) return { action: "leave", name, reason: LeaveReason.Skipped, message };
    return { action: "skip", reason: SkipReason.NothingFixable, message };
  }
  const before = fixableBefore(report, settings, libs);
  const spec = specFromReport(report, conv.value, settings, libs.updates);
  // Everything in the spec came from the report: check it against the CRD's own rules,
  // so hostile or oversized content is recorded as Invalid, not retried forever.
  const problems = specProblems(spec, schema);
  if (problems.length > 0)
    return {
      action: "invalid",
      name,
      reason: "InvalidReport",
      message: `the report cannot become a patch: ${problems.join("; ")}`,
    };
  if (!existing) return { action: "create", name, spec, before };
  // Cancelled because its report was deleted, and the report is back: patch it after all.
  if (existing.status?.phase === Phase.Cancelled && existing.status.reason === Reason.ReportDeleted)
    return { action: "update", name, spec, before, why: "ReportRestored" };
  if (existing.spec.image?.digest !== spec.image.digest)
    return { action: "update", name, spec, before, why: "DigestChanged" };
  if (existing.spec.findingsHash !== spec.findingsHash)
    return { action: "update", name, spec, before, why: "FindingsChanged" };
  // Another policy, or the same switched between DryRun and patching. (Not the target:
  // a {{date}} template renders a new tag every day, and that alone is no reason to patch.)
  // A PatchJob from before policies existed (no policyRef) is not patched again just
  // because a patching policy now covers it.
  const policyMoved =
    !!existing.spec.policyRef &&
    ((existing.spec.policyRef.name ?? "") !== (spec.policyRef?.name ?? "") ||
      (existing.spec.policyRef.namespace ?? "") !== (spec.policyRef?.namespace ?? ""));
  if (policyMoved || !!existing.spec.dryRun !== !!spec.dryRun)
    return { action: "update", name, spec, before, why: "PolicyChanged" };
  return {
    action: "leave",
    name,
    reason: LeaveReason.UpToDate,
    message: "digest and fixable findings unchanged",
  };
}

/** The controller's own settings for reports (a policy adds to them). */
export type ReportSettings = Omit<DecideSettings, "policy">;

/** The policy patches OS packages (the default; packageTypes can leave them out). */
function patchesOS(settings: DecideSettings): boolean {
  return librarySettingsOf(settings)?.packageTypes?.includes("os") ?? true;
}

/** The policy's library settings, else the request's own (an ad-hoc patch of a report). */
function librarySettingsOf(settings: DecideSettings): LibrarySettings | undefined {
  return settings.policy?.libraries ?? settings.libraries;
}

/** The report's library findings under the policy: the updates, and each finding with what happens to it. */
export function libraryPlanFor(
  report: Pick<ReportFacts, "libraries" | "imageMetadata">,
  settings: DecideSettings,
): LibraryPlan {
  const index = (settings.groupIndexes ?? true) && !!report.imageMetadata.indexDigest;
  return planLibraries(report.libraries, librarySettingsOf(settings) ?? {}, index);
}

/** The counts before a patch: the report's findings, and those a patch under the policy could fix. */
function fixableBefore(
  report: ReportFacts,
  settings: DecideSettings,
  libs: LibraryPlan,
): VulnerabilityCounts["before"] {
  if (!report.conversion.ok) return undefined;
  const c = report.conversion.value.counts;
  const planned = libs.findings.filter((f) => f.reason === LibraryReason.Planned).length;
  return { total: c.total, fixable: (patchesOS(settings) ? c.fixable : 0) + planned };
}

/** Everything the report reconciler knows when it decides; gathered from caches, no I/O here. */
export interface ReportInput {
  namespace: string;
  name: string;
  /** The report, as the cache keeps it; undefined when it is not (or no longer) there. */
  report?: ReportSummary;
  /** False while the first list of reports is still arriving (not listed is not deleted). */
  reportsSynced: boolean;
  /** The PatchJob of the same name. */
  current?: PatchJob;
  /** The report's image is one vuln-patcher pushed (a patched tag of some policy). */
  ownOutput: boolean;
  policy: PolicyVerdict;
  /** The gate of the PatchJob's policy (maxInFlight, window), asked only when publishing. */
  gate?: () => Gate | undefined;
  /** May the PatchJob's namespace read its source and push to its target? Asked only when publishing. */
  tenancy?: (pj: PatchJob) => TenancyVerdict;
  settings: ReportSettings;
  schema: SchemaNode;
  now: Date;
}

/** A report's PatchJob (not an index PatchJob, not one made by hand or by a policy run). */
export function isReportPatchJob(pj: PatchJob): boolean {
  return pj.spec.source === Source.Report && !isIndexPatchJob(pj);
}

/**
 * The one thing to do for a report now. See decideFacts for the spec; around it: the
 * report gone, our own output, the policy's verdict, and what a PatchJob needs next
 * (a plan for a dry run, handing a platform to its index, publishing).
 */
export function decideReport(i: ReportInput): Action {
  const { current, report } = i;
  if (current && !isReportPatchJob(current))
    return none("NotOurs", `PatchJob ${i.name} belongs to source ${current.spec.source}`);
  if (!report) return reportGone(i);
  if (report.deleting) return none("Deleting", "the report is being deleted");
  const im = report.facts?.imageMetadata;
  if (im?.tag && (isStagingTag(im.tag) || i.ownOutput))
    return none("OwnOutput", `a scan of an image vuln-patcher pushed (${im.tag})`);
  let settings: DecideSettings = i.settings;
  if (report.facts) {
    const v = i.policy;
    if (v.kind !== "patch") {
      // No policy, a Disabled one, or a Scheduled one between runs: nothing new happens.
      // Except a PatchJob a scheduled run already decided that still waits to be
      // published (held by maxInFlight or the window, or a failed publish).
      if (v.kind === "waiting" && current && samePolicy(current, v.policy) && needsPublish(current))
        return advance(current, i);
      return none(
        `Policy${v.kind}`,
        v.kind === "none" ? "no policy matches" : `policy ${v.policy.name}: ${v.kind}`,
      );
    }
    settings = { ...i.settings, policy: v.settings };
  }
  const d: Decision = report.facts
    ? decideFacts(report.facts, current, settings, i.schema)
    : {
        action: "invalid",
        name: i.name,
        reason: Reason.InvalidReport,
        message: `the report cannot be read: ${report.invalid?.message ?? "unknown problem"} (${report.invalid?.reason ?? "?"})`,
      };
  switch (d.action) {
    case "invalid":
      return recordInvalid(i, d.message);
    case "skip":
      return none(d.reason, d.message);
    case "leave":
      if (current && needsPublish(current)) return advance(current, i);
      return (current && librariesBackfill(current, i)) ?? none(d.reason, d.message);
    case "create": {
      const group =
        (i.settings.groupIndexes ?? true) && d.spec.image.indexDigest
          ? patchJobNameForIndex(d.spec.image)
          : undefined;
      return create(i.namespace, d.name, d.spec, group ? { [INDEX_GROUP_LABEL]: group } : {});
    }
    case "update":
      return {
        kind: "updateSpec",
        spec: d.spec,
        event: {
          type: "Normal",
          reason: d.why,
          message: `${d.spec.dryRun ? "plan" : "patch"} again (generation ${(current?.metadata.generation ?? 0) + 1}): ${WHY[d.why]}`,
        },
      };
  }
}

const WHY: Record<UpdateWhy, string> = {
  DigestChanged: "the image digest changed",
  FindingsChanged: "the fixable findings changed",
  PolicyChanged: "its policy changed",
  ReportRestored: "its report is back",
};

function samePolicy(pj: PatchJob, p: { name: string; namespace: string }): boolean {
  const ref = pj.spec.policyRef;
  return ref?.name === p.name && (ref.namespace ?? p.namespace) === p.namespace;
}

/**
 * The report is gone. Not listed yet is not gone: wait for the list. A PatchJob no
 * worker has started is cancelled (its image may be gone too); one that ran stays as
 * history, saying once that its report is gone. A platform handed to its index stays
 * with the index (whose plan for it is still true).
 */
function reportGone(i: ReportInput): Action {
  if (!i.reportsSynced)
    return { kind: "requeue", afterMs: 2_000, reason: "NotSynced", message: "reports still listing" };
  const pj = i.current;
  if (!pj) return none("NotFound", "no report and no PatchJob");
  const phase = pj.status?.phase;
  const grouped = pj.status?.reason === Reason.Grouped;
  const unstarted =
    (!phase || phase === Phase.Pending || phase === Phase.Queued) && !grouped && pj.spec.image !== undefined;
  if (unstarted) {
    const message =
      "the VulnerabilityReport was deleted before a worker started this patch: nothing was patched";
    return {
      kind: "status",
      status: markSourceGone(
        { ...pj, status: markCancelled(pj, Reason.ReportDeleted, message, i.now) },
        i.now,
      ),
      event: { type: "Warning", reason: Reason.ReportDeleted, message },
    };
  }
  if (getCondition(pj, ConditionType.SourceAvailable)?.status === "False")
    return none("SourceGone", "already recorded");
  return {
    kind: "status",
    status: markSourceGone(pj, i.now),
    event: {
      type: "Warning",
      reason: Reason.ReportDeleted,
      message: "the VulnerabilityReport was deleted; this PatchJob stays as history",
    },
  };
}

/**
 * A report that cannot become a patch gets a PatchJob in phase Invalid that says why, so
 * `kubectl get pj` shows it; its spec names only the report (no image, nothing runs). A
 * PatchJob that already patched an earlier, valid version of the report keeps its spec
 * and status (history), and gets a Warning event instead.
 */
function recordInvalid(i: ReportInput, message: string): Action {
  const { current, report } = i;
  if (current?.spec.image) {
    if (current.spec.reportRef?.resourceVersion === report?.resourceVersion)
      return none("InvalidReport", message);
    return {
      kind: "event",
      event: {
        type: "Warning",
        reason: Reason.InvalidReport,
        message: `the latest report is not used: ${message}`,
      },
    };
  }
  if (current?.status?.phase === Phase.Invalid && current.status.message === message)
    return none("InvalidReport", "already recorded");
  if (!current)
    return create(i.namespace, i.name, {
      source: Source.Report,
      reportRef: {
        namespace: i.namespace,
        name: i.name,
        ...(report?.uid ? { uid: report.uid } : {}),
        ...(report?.resourceVersion ? { resourceVersion: report.resourceVersion } : {}),
      },
    });
  return {
    kind: "status",
    status: markInvalid(current, Reason.InvalidReport, message, i.now),
    event: { type: "Warning", reason: Reason.InvalidReport, message },
  };
}

/** The policy skips end-of-life images: such a PatchJob ends EndOfLife at once (once per generation). */
function endOfLifeSkip(pj: PatchJob, i: ReportInput): Action | undefined {
  // (A policy compiled without its object, as some callers build it: no setting.)
  if (i.policy.kind !== "patch" || !i.policy.policy.policy?.spec.skipEndOfLife) return undefined;
  const eol = endOfLife(pj.spec.os, i.now);
  if (!eol) return undefined;
  const s = pj.status;
  if (s?.reason === Reason.EndOfLife && s.observedGeneration === (pj.metadata.generation ?? 1))
    return none(Reason.EndOfLife, "already recorded");
  return {
    kind: "status",
    status: markFailed({ ...pj, status: statusForGeneration(pj) }, Reason.EndOfLife, eol.message, i.now),
    event: { type: "Warning", reason: Reason.EndOfLife, message: eol.message },
  };
}

/**
 * The report's language-package findings recorded with the status the action writes,
 * each with what happens to it (Planned, or why not): nothing silently left out.
 */
function withLibraries(a: Action, all: LibraryFinding[] | undefined): Action {
  if (!all?.length) return a;
  // The CRD's limit: what is patched first, then the rest.
  const libraries = [...all]
    .sort((x, y) => Number(y.reason === "Planned") - Number(x.reason === "Planned"))
    .slice(0, MAX_LIBRARY_FINDINGS);
  if (a.kind === "status") return { ...a, status: { ...a.status, libraries } };
  if (a.kind === "publish") return { ...a, queued: { ...a.queued, libraries } };
  return a;
}

/**
 * A finished PatchJob whose status lacks some of its report's library findings: the
 * queued status that lists them lost to a worker's faster claim (its status wins), and the
 * worker lists only the findings of its own updates. Added once, the worker's outcomes kept.
 */
function librariesBackfill(pj: PatchJob, i: ReportInput): Action | undefined {
  const facts = i.report?.facts;
  if (!facts?.libraries.length || !isFinished(pj) || pj.status?.observedGeneration !== pj.metadata.generation)
    return undefined;
  const key = (f: LibraryFinding) => `${f.type}\u0000${f.packageName}\u0000${f.path ?? ""}\u0000${f.cve}`;
  const have = new Set((pj.status?.libraries ?? []).map(key));
  const missing = libraryPlanFor(facts, settingsOf(i)).findings.filter(
    (f) => !have.has(key(f)) && f.reason !== LibraryReason.Planned,
  );
  if (missing.length === 0 || have.size >= MAX_LIBRARY_FINDINGS) return undefined;
  const libraries = [...(pj.status?.libraries ?? []), ...missing].slice(0, MAX_LIBRARY_FINDINGS);
  return { kind: "status", status: { ...pj.status, libraries } };
}

/** The settings the report's PatchJob was decided with (its policy's, also between scheduled runs). */
function settingsOf(i: ReportInput): DecideSettings {
  const v = i.policy;
  if (v.kind === "patch") return { ...i.settings, policy: v.settings };
  if (v.kind === "waiting" && v.policy.policy)
    return {
      ...i.settings,
      policy: {
        name: v.policy.name,
        namespace: v.policy.namespace,
        libraries: policyLibraries(v.policy.policy.spec),
      },
    };
  return i.settings;
}

/** What a report's PatchJob needs next: a plan (dry run), its index, or the queue. */
function advance(pj: PatchJob, i: ReportInput): Action {
  const facts = i.report?.facts;
  const settings = settingsOf(i);
  // One plan of the report's libraries serves the counts and the list.
  const libs = facts ? libraryPlanFor(facts, settings) : undefined;
  const before = facts && libs ? fixableBefore(facts, settings, libs) : undefined;
  return withLibraries(advanceOS(pj, i, before), libs?.findings);
}

function advanceOS(pj: PatchJob, i: ReportInput, before: VulnerabilityCounts["before"]): Action {
  if (pj.spec.dryRun) {
    const updates = pj.spec.updates ?? [];
    const message = `dry run (policy ${pj.spec.policyRef?.name ?? "?"}): ${describePlan(updates)}`;
    return {
      kind: "status",
      status: {
        ...markPlanned({ ...pj, status: statusForGeneration(pj, before) }, message, {}, i.now),
        plannedUpdates: updates,
      },
    };
  }
  const eol = endOfLifeSkip(pj, i);
  if (eol) return eol;
  // Refused before it is handed to its index, so the platform's own PatchJob says why.
  const tenancy = i.tenancy?.(pj);
  if (tenancy && !tenancy.ok) return decideDenied(pj, tenancy, before, i.now);
  if ((i.settings.groupIndexes ?? true) && pj.spec.image?.indexDigest && pj.spec.image.platform !== "all") {
    const group = patchJobNameForIndex(pj.spec.image);
    return {
      kind: "status",
      status: markGrouped({ ...pj, status: statusForGeneration(pj, before) }, group),
      enqueue: [`${i.namespace}/${group}`],
    };
  }
  return decidePublish(pj, { tenancy, gate: i.gate, before, now: i.now });
}
