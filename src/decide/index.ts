// The decisions, pure: what to do for a report, an index, a request; which policy;
// names and targets. Nothing here does I/O.
export { type Action, type EventSpec, type Gate, MANAGED_BY, SOURCE_LABEL } from "./actions.ts";
export { nextRun } from "./cron.ts";
export { decideIndex, type IndexSettings } from "./decide-index.ts";
export {
  decideFacts,
  decideReport,
  type DecideSettings,
  type Decision,
  type ReportSettings,
  specFromReport,
} from "./decide-report.ts";
export { decideRequest } from "./decide-request.ts";
export { reportFacts, type ReportFacts, type ReportSummary, summarizeReport } from "./facts.ts";
export { INDEX_GROUP_LABEL, INDEX_LABEL, isIndexPatchJob, patchJobNameForIndex } from "./grouping.ts";
export { isPatchedTag, patchedTag, patchJobNameForImage, sourceRef, targetRef } from "./naming.ts";
export {
  choosePolicy,
  type CompiledPolicy,
  compilePolicy,
  describePlan,
  msUntilWindow,
  type PolicySubject,
  policyTarget,
  type PolicyVerdict,
} from "./policy.ts";
