// Our thin layer over @kubernetes/client-node: informers, the work queue and its rate
// limiters, the reconcile loop, leader election, typed PatchJob access, Events.
export { type Clock, FakeClock, realClock, sleepOn } from "./clock.ts";
export { loadKubeConfig, PooledKubeConfig } from "./config.ts";
export {
  DEFAULT_CONCURRENCY,
  DEFAULT_RECONCILE_TIMEOUT_MS,
  done,
  type Outcome,
  OUTCOMES,
  type Reconciler,
  ReconcileTimeoutError,
  requeueAfter,
  type Result,
  runController,
  type RunnerOptions,
} from "./controller.ts";
export { installCRDs } from "./crds.ts";
export {
  apiMessage,
  ignoreConflict,
  ignoreNotFound,
  isConflict,
  isNotFound,
  KubeApiError,
  statusCode,
} from "./errors.ts";
export { eventRecorder, type EventRecorder, type InvolvedObject } from "./events.ts";
export {
  DEFAULT_PAGE_SIZE,
  DEFAULT_RESYNC_MS,
  type Handlers,
  Informer,
  type InformerOptions,
  kubeWatch,
  type ListPage,
  type ListStats,
  mergedStore,
  objectKey,
  type RawObject,
  type Store,
  type WatchFn,
} from "./informer.ts";
export {
  DEFAULT_LEASE_DURATION_MS,
  DEFAULT_RENEW_DEADLINE_MS,
  DEFAULT_RETRY_PERIOD_MS,
  type LeaderElectionOptions,
  LeaderElector,
  type LeaseApi,
} from "./leader.ts";
export { patchJobClient, type PatchJobClient } from "./patchjobs.ts";
export {
  BucketRateLimiter,
  defaultControllerRateLimiter,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
  type RateLimiter,
} from "./ratelimiter.ts";
export { PARTIAL_METADATA_LIST, rawGet, rawGetJSON, type RawResponse } from "./raw.ts";
export { WorkQueue, type WorkQueueOptions } from "./workqueue.ts";
