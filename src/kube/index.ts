// Our thin layer over @kubernetes/client-node: informers, the work queue and its rate
// limiters, the reconcile loop, leader election, typed PatchJob access, Events.
export { type Clock, FakeClock, realClock, sleepOn } from "./clock.ts";
export { loadKubeConfig } from "./config.ts";
export {
  DEFAULT_CONCURRENCY,
  DEFAULT_RECONCILE_TIMEOUT_MS,
  done,
  OUTCOMES,
  type Reconciler,
  requeueAfter,
  type Result,
  runController,
} from "./controller.ts";
export { installCRDs } from "./crds.ts";
export { apiMessage, ignoreConflict, isConflict, isNotFound, statusCode } from "./errors.ts";
export { eventRecorder, type EventRecorder } from "./events.ts";
export {
  DEFAULT_RESYNC_MS,
  Informer,
  type ListPage,
  mergedStore,
  type RawObject,
  type Store,
} from "./informer.ts";
export { DEFAULT_LEASE_DURATION_MS, LeaderElector } from "./leader.ts";
export { patchJobClient, type PatchJobClient } from "./patchjobs.ts";

export { WorkQueue } from "./workqueue.ts";
