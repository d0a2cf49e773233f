// The decisions, pure: what to do for a report, an index, a request; which policy;
// names and targets. Nothing here does I/O.
export {
  type Action,
  create,
  decideDenied,
  decidePublish,
  type EventSpec,
  type Gate,
  MANAGED_BY,
  needsPublish,
  type NewPatchJob,
  none,
  SOURCE_LABEL,
} from "./actions.ts";
export { checkTimeZone, type Cron, CronError, nextRun, parseCron, wallClock } from "./cron.ts";
export { decideIndex, DEFAULT_INDEX_SETTLE_MS, type IndexInput, type IndexSettings } from "./decide-index.ts";
export {
  decideFacts,
  decideReport,
  type DecideSettings,
  type Decision,
  isReportPatchJob,
  LeaveReason,
  libraryPlanFor,
  type ReportInput,
  type ReportPatchSpec,
  type ReportSettings,
  SkipReason,
  specFromReport,
  type UpdateWhy,
} from "./decide-report.ts";
export { decideRequest, type RequestInput } from "./decide-request.ts";
export {
  type RawReport,
  reportFacts,
  type ReportFacts,
  type ReportSummary,
  summarizeReport,
} from "./facts.ts";
export {
  type GroupSettings,
  INDEX_GROUP_LABEL,
  INDEX_LABEL,
  indexChange,
  indexPlan,
  type IndexPlan,
  isIndexMember,
  isIndexPatchJob,
  looksLikeIndexName,
  markGrouped,
  patchJobNameForIndex,
} from "./grouping.ts";
export {
  formatImageRef,
  isPatchedTag,
  isStagingTag,
  patchedTag,
  patchJobNameForImage,
  patchJobNameForReport,
  sourceRef,
  targetRef,
} from "./naming.ts";
export {
  choosePolicy,
  type CompiledPolicy,
  compilePolicy,
  type CompileResult,
  describePlan,
  policyLibraries,
  labelsMatch,
  msUntilWindow,
  type Pattern,
  policyMatches,
  type PolicySubject,
  policyTarget,
  type PolicyVerdict,
  renderTagTemplate,
} from "./policy.ts";
export {
  checkTenancy,
  type CompiledGrant,
  compileGrant,
  type GrantResult,
  grantsFor,
  type ImageName,
  mayUseGlobalCredentials,
  type TenancyFacts,
  type TenancyVerdict,
} from "./tenancy.ts";
export {
  decideVerification,
  patchedDigests,
  scanJobFor,
  type ScanRequest,
  VERIFIED,
  verificationOf,
  VerifiedReason,
  withVerification,
} from "./verify-scan.ts";
export {
  decideRollout,
  DEFAULT_ROLLOUT_CONCURRENCY,
  DEFAULT_ROLLOUT_TIMEOUT_S,
  health,
  ROLLOUT_POLL_MS,
  rolloutImage,
  rolloutInFlight,
  rolloutPending,
  type RolloutInput,
  type RolloutSpec,
} from "./rollout.ts";
export {
  gitOpsOwner,
  matchWorkloads,
  readRecord,
  ROLLED_BACK,
  type RollbackRecord,
  ROLLOUT_OPT_OUT,
  ROLLOUT_RECORD,
  type RolloutRecord,
  type WorkloadProgress,
  type WorkloadWrite,
  type RolloutSelection,
  type WorkloadFacts,
  type WorkloadKind,
  type WorkloadMatch,
  WorkloadState,
} from "./workloads.ts";
