// What the controller keeps of each report in its cache: the facts a decision needs
// (identity, image, converted findings). A report is ~150 KB; this is a few hundred
// bytes, and reconcile never has to read the report again.
import { parseReport, reportFacts, type ReportFacts } from "../api/index.ts";
import type { RawObject } from "../kube/informer.ts";

export interface ReportSummary {
  uid?: string;
  resourceVersion?: string;
  deleting: boolean;
  /** Set when the report parsed. */
  facts?: ReportFacts;
  /** Set when it did not: why. */
  invalid?: { reason: string; message: string };
}

export function summarizeReport(raw: RawObject): ReportSummary {
  const parsed = parseReport(raw);
  const base = {
    ...(raw.metadata?.uid ? { uid: raw.metadata.uid } : {}),
    resourceVersion: raw.metadata?.resourceVersion,
    deleting: !!raw.metadata?.deletionTimestamp,
  };
  if (!parsed.ok) return { ...base, invalid: { reason: parsed.reason, message: parsed.message } };
  return { ...base, facts: reportFacts(parsed.value) };
}
