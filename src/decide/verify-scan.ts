// The independent after-scan: when sbomscanner scans an image we patched (a report whose
// digest is the PatchJob's patched digest), its findings are the proof we did not write
// ourselves. For each CVE we marked fixed: does the scanner agree (it lists no fixable
// finding for it any more)? All agree: Verified=True. One it still lists: Verified=False,
// a Warning naming it. Succeeded without a scan yet: Verified=Unknown (waiting).
import {
  type PatchJob,
  type PatchJobStatus,
  Phase,
  setCondition,
  type ScanVerification,
} from "../api/index.ts";
import { isDeepStrictEqual } from "node:util";
import type { Action, EventSpec } from "./actions.ts";
import type { ReportSummary } from "./facts.ts";

export const VERIFIED = "Verified";

export const VerifiedReason = {
  WaitingForScan: "WaitingForScan",
  ScannerAgrees: "ScannerAgrees",
  ScannerDisagrees: "ScannerDisagrees",
} as const;

/** The digests an after-scan of this PatchJob may carry: the published one, and a platform's. */
export function patchedDigests(pj: PatchJob): string[] {
  const p = pj.status?.patchedImage;
  return [p?.digest, p?.platformDigest].filter((d): d is string => !!d);
}

/** What the scan says of our fixes, as the status records it. */
export function verificationOf(pj: PatchJob, scan: ReportSummary, key: string): ScanVerification {
  const facts = scan.facts!;
  const findings = facts.conversion.ok ? facts.conversion.value.findings : [];
  const stillFixable = new Set(findings.map((f) => f.cve));
  const fixed = pj.status?.fixedCVEs ?? [];
  const [namespace, name] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
  return {
    report: { namespace, name },
    digest: facts.imageMetadata.digest,
    fixableLeft: stillFixable.size,
    agreed: fixed.filter((c) => !stillFixable.has(c)).length,
    disputed: fixed.filter((c) => stillFixable.has(c)).sort(),
  };
}

/**
 * For a Succeeded PatchJob: the status its after-scan calls for, or undefined when the
 * status already says it (level-triggered: a second pass writes nothing).
 * `scan` is the newest report of a patched digest, `scanKey` its namespace/name.
 */
export function decideVerification(
  pj: PatchJob | undefined,
  scan: { key: string; summary: ReportSummary } | undefined,
  now: Date,
): Action | undefined {
  if (!pj || pj.status?.phase !== Phase.Succeeded) return undefined;
  if (pj.status.observedGeneration !== (pj.metadata.generation ?? 1)) return undefined;
  const current = pj.status.conditions?.find((c) => c.type === VERIFIED);
  if (!scan?.summary.facts) {
    if (current) return undefined;
    return status(
      pj,
      undefined,
      "Unknown",
      VerifiedReason.WaitingForScan,
      "no scan of the patched image yet",
      now,
    );
  }
  const v = verificationOf(pj, scan.summary, scan.key);
  const agrees = v.disputed.length === 0;
  const message = agrees
    ? `${scan.key} agrees: ${v.agreed} fixed CVEs no longer found; ${v.fixableLeft} fixable findings left`
    : `${scan.key} still finds ${v.disputed.join(", ")} (marked fixed); ${v.fixableLeft} fixable findings left`;
  const reason = agrees ? VerifiedReason.ScannerAgrees : VerifiedReason.ScannerDisagrees;
  const sameStatus =
    current?.status === (agrees ? "True" : "False") &&
    current.reason === reason &&
    isDeepStrictEqual(pj.status.verification, v);
  if (sameStatus) return undefined;
  const event: EventSpec | undefined = agrees
    ? { type: "Normal", reason, message }
    : { type: "Warning", reason, message };
  return status(pj, v, agrees ? "True" : "False", reason, message, now, event);
}

function status(
  pj: PatchJob,
  verification: ScanVerification | undefined,
  s: "True" | "False" | "Unknown",
  reason: string,
  message: string,
  now: Date,
  event?: EventSpec,
): Action {
  const next: PatchJobStatus = {
    ...pj.status,
    ...(verification ? { verification } : {}),
    conditions: setCondition(
      pj.status?.conditions,
      { type: VERIFIED, status: s, reason, message, observedGeneration: pj.metadata.generation ?? 1 },
      now,
    ),
  };
  return { kind: "status", status: next, ...(event ? { event } : {}) };
}

/** A reconciler's action, or when it has nothing to do, what the after-scan calls for. */
export function withVerification(
  action: Action,
  pj: PatchJob | undefined,
  scan: { key: string; summary: ReportSummary } | undefined,
  now: Date,
): Action {
  if (action.kind !== "none") return action;
  return decideVerification(pj, scan, now) ?? action;
}
