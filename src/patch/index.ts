// The patch engine, shared by the worker and the patch CLI: plan against the image's own
// package database, copa's argv and the meaning of its output, the executors that run it
// (a child process, or a Job), and verification in the registry.
export { copaArgv, type CopaOptions } from "./argv.ts";
export { type BuilderChoice, builderKey, builderOrder, onBuilders, parseBuilderAddrs } from "./builders.ts";
export { type CopaRequest, type Executor, LineTail, safeFileName } from "./executor.ts";
export {
  buildJob,
  CERTS_DIR,
  DOCKER_CONFIG_DIR,
  jobName,
  kubernetesExecutor,
  type KubernetesExecutorOptions,
  MANIFEST_DIR,
  manifestFiles,
  VEX_DIR,
} from "./kubernetes.ts";
export { DEFAULT_KILL_GRACE_MS, localExecutor, type LocalExecutorOptions } from "./local.ts";
export { classifyCopaRun, type CopaRun, type CopaVerdict, lastErrorLine } from "./outcome.ts";
export {
  COPA_KILL_SLACK_MS,
  DEFAULT_COPA_TIMEOUT,
  type EngineInput,
  layersExtend,
  patchImage,
  type PatchImageInput,
  type PatchImageResult,
  type ImageSigner,
  type LibraryOutcome,
  type PatchedFacts,
  type Stage,
  updateAllVerification,
} from "./patch-image.ts";
export {
  archTagSuffix,
  imageEntries,
  type IndexPlatformRequest,
  patchIndex,
  type PatchIndexInput,
  type PatchIndexResult,
  platformKey,
  type PlatformOutcome,
} from "./patch-index.ts";
export {
  copaLibraryReason,
  type LibraryPlanResult,
  type LibraryVerification,
  planLibraryUpdates,
  type TrivyReport,
  trivyReport,
  verifyLibraryUpdates,
} from "./libraries.ts";
export { librariesAfter, librariesFailed } from "./library-status.ts";
export { stagingTag } from "./staging.ts";
export {
  type Attestation,
  CosignSigner,
  DEFAULT_COSIGN_TIMEOUT_MS,
  OPENVEX_TYPE,
  PROVENANCE_TYPE,
  type SignatureInfo,
  type SignContext,
  type SignerOptions,
  signingError,
  type VerifiedImage,
  VerifyError,
  verifyImage,
} from "./sign.ts";
export { type Plan, planUpdates, schemeFor, type Verification, verifyUpdates } from "./plan.ts";
