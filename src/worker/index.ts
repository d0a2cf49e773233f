// The worker: the shared durable consumer, and for each request: claim, patch, verify,
// record.
export {
  DEFAULT_WORKER_CONCURRENCY,
  WorkerOptionsError,
  parseWorkerOptions,
  startWorker,
  type RunningWorker,
  type WorkerOptions,
} from "./manager.ts";
