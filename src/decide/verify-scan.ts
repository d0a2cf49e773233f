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
  type ScanJob,
  type ScanVerification,
} from "../api/index.ts";
import { isDeepStrictEqual } from "node:util";
import { createHash } from "node:crypto";
import { type Action, type EventSpec, MANAGED_BY } from "./actions.ts";
import type { ReportSummary } from "./facts.ts";

export const VERIFIED = "Verified";

export const VerifiedReason = {
  WaitingForScan: "WaitingForScan",
  ScanRequested: "ScanRequested",
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
  /** The policy asks for a scan at once, and this sbomscanner Registry (of the PatchJob's namespace) can make it. */
  request?: ScanRequest,
): Action | undefined {
  if (!pj || pj.status?.phase !== Phase.Succeeded) return undefined;
  if (pj.status.observedGeneration !== (pj.metadata.generation ?? 1)) return undefined;
  const current = pj.status.conditions?.find((c) => c.type === VERIFIED);
  if (!scan?.summary.facts) {
    if (request && current?.reason !== VerifiedReason.ScanRequested) return requestScan(pj, request, now);
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
  request?: ScanRequest,
): Action {
  if (action.kind !== "none") return action;
  return decideVerification(pj, scan, now, request) ?? action;
}

/** The ScanJob, and the status that says it was asked for (so that it is asked for once). */
function requestScan(pj: PatchJob, request: ScanRequest, now: Date): Action {
  const job = scanJobFor(pj, request);
  const message = `asked sbomscanner for a scan of the patched image: ScanJob ${job.metadata.name} (Registry ${request.registry})`;
  const s = status(pj, undefined, "Unknown", VerifiedReason.ScanRequested, message, now);
  if (s.kind !== "status") throw new Error("unreachable");
  return {
    kind: "scanJob",
    scanJob: job,
    status: s.status,
    event: { type: "Normal", reason: VerifiedReason.ScanRequested, message },
  };
}

/** Where sbomscanner can scan the patched image: a Registry of the PatchJob's namespace, and the repository if it lists it. */
export interface ScanRequest {
  registry: string;
  repository?: string;
}

/** One ScanJob per patch: its name comes from the PatchJob's uid and generation. */
export function scanJobFor(pj: PatchJob, r: ScanRequest): ScanJob {
  const id = createHash("sha256")
    .update(`${pj.metadata.uid ?? pj.metadata.name}/${pj.metadata.generation ?? 1}`)
    .digest("hex")
    .slice(0, 12);
  const base = pj.metadata.name
    .slice(0, 40)
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/-+$/, "");
  return {
    apiVersion: "sbomscanner.kubewarden.io/v1alpha1",
    kind: "ScanJob",
    metadata: {
      name: `vp-${base}-${id}`,
      namespace: pj.metadata.namespace!,
      labels: {
        ...MANAGED_BY,
        "vulnpatcher.io/patchjob": pj.metadata.name.slice(0, 63).replace(/[^A-Za-z0-9_.-]/g, "-"),
      },
    },
    spec: { registry: r.registry, ...(r.repository ? { repositories: [{ name: r.repository }] } : {}) },
  };
}
