// The three reconcilers, one per kind of PatchJob. Each is the same few lines: read what
// the caches know, decide (pure, src/decide), apply the one action. Level-triggered: run
// twice in a row, the second pass changes nothing.
import type { PatchJob, SchemaNode, Severity } from "../api/index.ts";
import type { TenancyVerdict } from "../decide/index.ts";
import {
  decideIndex,
  decideReport,
  decideRequest,
  withVerification,
  decideRollout,
  rolloutInFlight,
  rolloutPending,
  type WorkloadFacts,
  type ScanRequest,
  VERIFIED,
  VerifiedReason,
  type IndexSettings,
  type ReportSettings,
  type ReportSummary,
} from "../decide/index.ts";
import type { Reconciler, Store } from "../kube/index.ts";
import { apply, type ApplyDeps } from "./apply.ts";
import type { PolicySet } from "./policy-set.ts";
import { splitKey, type MemberIndex } from "./routing.ts";

export interface ReconcilerDeps extends ApplyDeps {
  reports: Store<ReportSummary>;
  /** False while the first list of reports is still arriving. */
  reportsSynced: () => boolean;
  patchJobs: Store<PatchJob>;
  members: MemberIndex;
  policies: PolicySet;
  /** True for an image reference (registry/repository:tag) some PatchJob pushed: our own output. */
  isOwnOutput: (ref: string) => boolean;
  settings: ReportSettings & IndexSettings;
  /** May the PatchJob's namespace read its source and push to its target (src/controller/tenancy.ts)? */
  tenancy: (pj: PatchJob) => TenancyVerdict;
  /** The PatchJob CRD's spec schema, loaded once at start. */
  schema: SchemaNode;
  clock: () => Date;
  /** The report of a PatchJob's patched digest (sbomscanner's after-scan), by key. */
  scanOf: (pj: PatchJob | undefined) => string | undefined;
  /** The workloads of a namespace (read when a rollout has work left; `progress` while one changes). */
  workloadsIn?: (namespace: string, o?: { progress?: boolean }) => Promise<WorkloadFacts[] | undefined>;
  /** The sbomscanner Registry of the PatchJob's namespace that covers its patched image (read when a scan is to be asked for). */
  registryFor?: (pj: PatchJob) => Promise<ScanRequest | undefined>;
}

/**
 * Whether to ask sbomscanner for the scan now: the policy wants it, the patch Succeeded,
 * there is no scan yet and it was not asked for. Only then is a Registry looked up.
 */
async function scanRequest(d: ReconcilerDeps, pj: PatchJob | undefined): Promise<ScanRequest | undefined> {
  if (!pj || !d.registryFor || pj.status?.phase !== "Succeeded" || d.scanOf(pj)) return undefined;
  const verified = pj.status.conditions?.find((c) => c.type === VERIFIED);
  if (verified?.reason === VerifiedReason.ScanRequested || !d.policies.wantsScan(pj)) return undefined;
  return d.registryFor(pj);
}

/**
 * The rollout's next step (src/decide/rollout.ts): a plan once per generation, then under
 * Auto one write per pass. The workloads are read only when the rollout has work left.
 */
async function rolloutStep(d: ReconcilerDeps, pj: PatchJob | undefined, fixedSeverity?: Severity) {
  if (!pj || !d.workloadsIn) return undefined;
  const rollout = d.policies.rolloutOf(pj);
  if (!rolloutPending(pj, rollout)) return undefined;
  const workloads = await d.workloadsIn(pj.metadata.namespace!, { progress: rolloutInFlight(pj) });
  return decideRollout({ pj, rollout, workloads, fixedSeverity, now: d.clock() });
}

/** The after-scan of this PatchJob, as the decision reads it. */
function afterScan(d: ReconcilerDeps, pj: PatchJob | undefined) {
  const key = d.scanOf(pj);
  const summary = key ? d.reports.get(key) : undefined;
  return key && summary ? { key, summary } : undefined;
}

export function reportReconciler(d: ReconcilerDeps): Reconciler {
  return async (key, _signal, log) => {
    const [namespace, name] = splitKey(key);
    const report = d.reports.get(key);
    const current = d.patchJobs.get(key);
    const im = report?.facts?.imageMetadata;
    const decided = decideReport({
      namespace,
      name,
      report,
      reportsSynced: d.reportsSynced(),
      current,
      ownOutput: !!im?.tag && d.isOwnOutput(`${im.registryURI}/${im.repository}:${im.tag}`),
      policy: report?.facts ? d.policies.verdict(key, report.facts) : { kind: "none" },
      gate: () => (current ? d.policies.gate(current, d.patchJobs) : undefined),
      tenancy: d.tenancy,
      settings: d.settings,
      schema: d.schema,
      now: d.clock(),
    });
    const verify = withVerification(
      decided,
      current,
      afterScan(d, current),
      d.clock(),
      decided.kind === "none" ? await scanRequest(d, current) : undefined,
    );
    const action =
      verify.kind === "none"
        ? ((await rolloutStep(d, current, report?.facts?.severity.fixable)) ?? verify)
        : verify;
    const result = await apply(d, action, current, log);
    // A Scheduled policy's grant is one decision: this was it.
    d.policies.consumeGrant(key);
    return result;
  };
}

export function indexReconciler(d: ReconcilerDeps): Reconciler {
  return async (key, _signal, log) => {
    const [namespace, name] = splitKey(key);
    const current = d.patchJobs.get(key);
    const members = d.members
      .membersOf(key)
      .map((k) => d.patchJobs.get(k))
      .filter((m): m is PatchJob => m !== undefined);
    const decided = decideIndex({
      namespace,
      name,
      members,
      current,
      gate: () => (current ? d.policies.gate(current, d.patchJobs) : undefined),
      tenancy: d.tenancy,
      reportsSynced: d.reportsSynced(),
      settings: d.settings,
      now: d.clock(),
    });
    const verify = withVerification(decided, current, afterScan(d, current), d.clock());
    const action = verify.kind === "none" ? ((await rolloutStep(d, current)) ?? verify) : verify;
    return apply(d, action, current, log);
  };
}

export function requestReconciler(d: ReconcilerDeps): Reconciler {
  return async (key, _signal, log) => {
    const current = d.patchJobs.get(key);
    const decided = decideRequest({
      current,
      gate: () => (current ? d.policies.gate(current, d.patchJobs) : undefined),
      tenancy: d.tenancy,
      reportsSynced: d.reportsSynced(),
      now: d.clock(),
    });
    const verify = withVerification(decided, current, afterScan(d, current), d.clock());
    const action = verify.kind === "none" ? ((await rolloutStep(d, current)) ?? verify) : verify;
    return apply(d, action, current, log);
  };
}
