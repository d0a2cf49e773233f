// PatchJob (vulnpatcher.io/v1alpha1): TypeScript mirror of
// charts/vuln-patcher/crds/patchjobs.vulnpatcher.io.yaml. The status transitions are in
// status.ts.
import type { ObjectMeta } from "./report.ts";
import type { Severity } from "./patchpolicy.ts";
import type { LibraryFinding, LibraryUpdate } from "./library.ts";

export const GROUP = "vulnpatcher.io";
export const VERSION = "v1alpha1";
export const PLURAL = "patchjobs";
export const KIND = "PatchJob";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const DEFAULT_TAG_SUFFIX = "-patched";
/** @default 10m, as in the CRD. */
export const DEFAULT_TIMEOUT = "10m";
export const MAX_FIXED_CVES = 200;

export const Phase = {
  Pending: "Pending",
  Queued: "Queued",
  Planned: "Planned",
  Running: "Running",
  Succeeded: "Succeeded",
  NoOp: "NoOp",
  Failed: "Failed",
  Invalid: "Invalid",
  /** Ended before a worker started it (its report deleted, or cancelled through the API). */
  Cancelled: "Cancelled",
  /**
   * Refused by the tenancy rules (src/decide/tenancy.ts): the namespace may not read this
   * source or push to this target. Nothing was read or pushed. Looked at again when a
   * TenantGrant changes.
   */
  Denied: "Denied",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

/** Phases after which nothing more happens for this generation. */
export const TERMINAL_PHASES: ReadonlySet<Phase> = new Set([
  Phase.Succeeded,
  Phase.NoOp,
  Phase.Failed,
  Phase.Invalid,
  Phase.Planned,
  Phase.Cancelled,
  Phase.Denied,
]);

export const Source = { Report: "report", Policy: "policy", Manual: "manual" } as const;
export type Source = (typeof Source)[keyof typeof Source];

/**
 * Status reasons. Error classes carry one of these, so the failure handler maps an
 * error to a status without parsing text.
 */
export const Reason = {
  Created: "Created",
  Published: "Published",
  PublishFailed: "PublishFailed",
  Claimed: "Claimed",
  Patched: "Patched",
  AlreadyPatched: "AlreadyPatched",
  NothingToUpdate: "NothingToUpdate",
  Planned: "Planned",
  UnsupportedOS: "UnsupportedOS",
  /** The image's OS release is past its end of life (src/api/eol.ts): rebuild, do not patch. */
  EndOfLife: "EndOfLife",
  InvalidSpec: "InvalidSpec",
  InvalidReport: "InvalidReport",
  BuildKitUnreachable: "BuildKitUnreachable",
  RegistryUnreachable: "RegistryUnreachable",
  /** A registry address no request can ever reach (a port fetch refuses, an unparsable host). */
  InvalidRegistryAddress: "InvalidRegistryAddress",
  RegistryDenied: "RegistryDenied",
  ImageNotFound: "ImageNotFound",
  PackageError: "PackageError",
  Timeout: "Timeout",
  CopaFailed: "CopaFailed",
  VerificationFailed: "VerificationFailed",
  /** Signing: no signing key where the worker was told to find it (or it does not open). */
  SigningKeyMissing: "SigningKeyMissing",
  /** Signing: the registry refused the signature or an attestation. */
  SignatureRefused: "SignatureRefused",
  /** Signing or attesting failed otherwise (cosign's message says why). */
  SigningFailed: "SigningFailed",
  /** A blob whose content does not have the digest it was asked for: not used. */
  BlobDigestMismatch: "BlobDigestMismatch",
  /** An image over a read limit (layer or file size, entries): not read further. */
  ImageTooLarge: "ImageTooLarge",
  /** A layer with the right digest whose content does not decompress or untar. */
  CorruptLayer: "CorruptLayer",
  MaxAttemptsExceeded: "MaxAttemptsExceeded",
  ReportDeleted: "ReportDeleted",
  ReportPresent: "ReportPresent",
  /** Cancelled through the API before a worker started it. */
  Cancelled: "Cancelled",
  /** Waiting: the policy's maxInFlight is reached. */
  PolicyLimit: "PolicyLimit",
  /** Waiting: outside the policy's time window. */
  OutsideWindow: "OutsideWindow",
  /** A platform's PatchJob handed to its index's PatchJob. */
  Grouped: "Grouped",
  /** A platform's patch was fine but the index was not published (another platform failed). */
  IndexNotPublished: "IndexNotPublished",
  /** Tenancy: the namespace may not patch this image (no report of its own names it, no grant). */
  SourceNotAllowed: "SourceNotAllowed",
  /** Tenancy: the namespace may not push to this repository (not the source's, no grant). */
  TargetNotAllowed: "TargetNotAllowed",
  /** Tenancy: the registry refused, and the only credentials for it are the workers' own, not granted to the namespace. */
  CredentialsNotAllowed: "CredentialsNotAllowed",
  /** The credentials the namespace names (a policy's Secret, a Registry's authSecret) cannot be read or used. */
  CredentialsUnavailable: "CredentialsUnavailable",
  /** A Running PatchJob whose worker stopped writing heartbeats, and whose request was gone: queued again. */
  HeartbeatLost: "HeartbeatLost",
  Internal: "Internal",
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export const ConditionType = {
  Queued: "Queued",
  Succeeded: "Succeeded",
  SourceAvailable: "SourceAvailable",
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ImageSpec {
  registryURI: string;
  repository: string;
  tag?: string;
  digest?: string;
  indexDigest?: string;
  platform: string;
}

export interface ReportRef {
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

export interface PackageUpdate {
  name: string;
  installedVersion: string;
  fixedVersion: string;
  vulnerabilityIDs?: string[];
}

/** One platform of a multi-arch index PatchJob, planned from that platform's report. */
export interface PlatformPatch {
  platform: string;
  /** The platform's manifest digest in the source index. */
  digest: string;
  /** The report's PatchJob, which gets this platform's result. */
  patchJob?: string;
  /** That PatchJob's generation the plan came from. */
  generation?: number;
  findingsHash?: string;
  updates?: PackageUpdate[];
}

export const PlatformResult = {
  Patched: "Patched",
  AlreadyPatched: "AlreadyPatched",
  /** Its report's updates are already in the image: the original manifest stays. */
  UpToDate: "UpToDate",
  /** No report (or nothing fixable): the original manifest stays. */
  Unchanged: "Unchanged",
  Failed: "Failed",
  /** Patched, but the index was not published because another platform failed. */
  NotPublished: "NotPublished",
} as const;
export type PlatformResult = (typeof PlatformResult)[keyof typeof PlatformResult];

export interface PlatformStatus {
  platform: string;
  result: PlatformResult;
  sourceDigest?: string;
  /** The platform's manifest in the published index. */
  digest?: string;
  message?: string;
}

/** A rollout of patched images to the workloads of the PatchJob's namespace (docs/rollout.md). */
export interface RolloutSettings {
  mode?: "Off" | "DryRun" | "Auto";
  kinds?: Array<"Deployment" | "StatefulSet" | "DaemonSet" | "CronJob" | "Pod">;
  matchLabels?: Record<string, string>;
  minSeverity?: Severity;
  window?: { start: string; end: string; timeZone?: string };
  maxConcurrent?: number;
  timeoutSeconds?: number;
}

export interface PatchJobSpec {
  /** Absent only on the record of a report that could not be turned into a patch (phase Invalid). */
  image?: ImageSpec;
  source: Source;
  reportRef?: ReportRef;
  policyRef?: { name: string; namespace?: string };
  os?: { type: string; version: string };
  findingsHash?: string;
  updates?: PackageUpdate[];
  /** Python and Node.js packages copa updates too (a policy's packageTypes includes library). */
  libraryUpdates?: LibraryUpdate[];
  /** Multi-arch (image.platform "all"): the platforms to patch together. */
  platforms?: PlatformPatch[];
  target?: { reference?: string; tagSuffix?: string };
  options?: { ignoreErrors?: boolean; timeout?: string; publishPartial?: boolean };
  dryRun?: boolean;
  /** A manual PatchJob's own rollout (a policy's PatchJob follows its policy's). */
  rollout?: RolloutSettings;
}

export interface VulnerabilityCounts {
  before?: { total?: number; fixable?: number };
  after?: { total?: number; fixable?: number; fixed?: number };
}

/** What sbomscanner's scan of the patched image says of the fixes. */
export interface ScanVerification {
  /** The VulnerabilityReport of the patched image. */
  report: { namespace: string; name: string };
  digest?: string;
  /** Fixable findings the scanner still lists. */
  fixableLeft: number;
  /** CVEs marked fixed that the scanner no longer lists as fixable. */
  agreed: number;
  /** CVEs marked fixed that the scanner still lists as fixable. */
  disputed: string[];
}

export interface PatchJobStatus {
  phase?: Phase;
  reason?: string;
  message?: string;
  observedGeneration?: number;
  attempts?: number;
  startTime?: string;
  /** While Running: the worker's last sign of life. */
  heartbeatTime?: string;
  completionTime?: string;
  queuedTime?: string;
  worker?: string;
  /** The BuildKit (address) that ran the last attempt. */
  buildkit?: string;
  patchedImage?: { reference?: string; digest?: string; shortDigest?: string; platformDigest?: string };
  /** A platform's PatchJob: the multi-arch PatchJob that patches it with the rest of its index. */
  group?: string;
  /** A multi-arch PatchJob: the result per platform. */
  platforms?: PlatformStatus[];
  vulnerabilities?: VulnerabilityCounts;
  fixedCVEs?: string[];
  fixedCVEsTruncated?: boolean;
  /** A dry run (phase Planned): the updates that would be made, with the CVEs each fixes. */
  plannedUpdates?: PackageUpdate[];
  /** Findings in language packages and binaries (npm, PyPI, Go, ...): each with what happens to it and why. */
  libraries?: LibraryFinding[];
  /** sbomscanner's own scan of the patched image, against the CVEs marked fixed (docs/signing.md). */
  verification?: ScanVerification;
  /** The workloads of this namespace running the source image, and their rollout (src/decide/rollout.ts). */
  rollout?: {
    mode: string;
    observedGeneration?: number;
    /** Workloads Updated (kubectl's Rolled column). */
    updated?: number;
    workloads: Array<{
      kind: string;
      namespace: string;
      name: string;
      container: string;
      from: string;
      /** The patched image by digest it gets (Auto) or would get (DryRun). */
      to?: string;
      state: string;
      reason?: string;
      message?: string;
      startedAt?: string;
      finishedAt?: string;
    }>;
  };
  /** The published image's signature and attestations (docs/signing.md). */
  signature?: { digest: string; attestations: string[] };
  conditions?: Condition[];
}

export interface PatchJob {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta & { name: string; namespace?: string };
  spec: PatchJobSpec;
  status?: PatchJobStatus;
}
