// The PatchJob and PatchPolicy API, the sbomscanner report model, and the pure functions
// over them (status transitions, conversion to copa's manifest, versions, references).
export {
  type Conversion,
  type ConversionResult,
  convertReport,
  type Counts,
  toUpdateManifest,
  type UpdateManifest,
} from "./convert.ts";
export {
  type CRDObject,
  loadCRDFile,
  ourCRDs,
  patchJobCRD,
  patchJobSpecSchema,
  projectRoot,
  type SchemaNode,
} from "./crd.ts";
export { PatchError } from "./errors.ts";
export { formatImageRef, type ImageRef, isValidTag, parseImageRef } from "./imageref.ts";

export {
  API_VERSION,
  ConditionType,
  DEFAULT_TAG_SUFFIX,
  DEFAULT_TIMEOUT,
  GROUP,
  type ImageSpec,
  KIND,
  type PackageUpdate,
  type PatchJob,
  type PatchJobSpec,
  type PatchJobStatus,
  Phase,
  type PlatformPatch,
  PlatformResult,
  PLURAL,
  Reason,
  Source,
  VERSION,
  type VulnerabilityCounts,
} from "./patchjob.ts";
export {
  defaultPolicy,
  type LabelSelector,
  Mode,
  type PatchPolicy,
  type PatchPolicySpec,
  type PatchPolicyStatus,
  POLICY_PLURAL,
  SEVERITIES,
  type Severity,
  severityRank,
} from "./patchpolicy.ts";
export {
  type ImageMetadata,
  type ObjectMeta,
  parsePlatform,
  parseReport,
  type Platform,
  REPORT_GROUP,
  REPORT_KIND,
  REPORT_PLURAL,
  REPORT_VERSION,
  type VulnerabilityReport,
} from "./report.ts";
export { specProblems } from "./schema.ts";
export {
  getCondition,
  isFinished,
  markCancelled,
  markFailed,
  markInvalid,
  markNoOp,
  markPlanned,
  markPublishFailed,
  markQueued,
  markRunning,
  markSourceGone,
  markSucceeded,
  setCondition,
  statusForGeneration,
} from "./status.ts";
export { compareDpkg, compareVersions, VersionScheme } from "./version.ts";
