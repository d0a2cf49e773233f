// The patch engine, shared by the worker and the patch CLI: plan against the image's own
// package database, copa's argv and the meaning of its output, the executors that run it
// (a child process, or a Job), and verification in the registry.
export { copaArgv } from "./argv.ts";
export { type Executor } from "./executor.ts";
export { buildJob, CERTS_DIR, jobName, kubernetesExecutor } from "./kubernetes.ts";
export { localExecutor } from "./local.ts";

export { patchImage, type PatchImageResult } from "./patch-image.ts";
export { patchIndex, type PatchIndexInput, type PatchIndexResult } from "./patch-index.ts";
export { planUpdates } from "./plan.ts";
