// The controller: caches, the three reconcilers (reports, index PatchJobs, requests),
// the sweep, the schedules and the policy statuses, under leader election.
export {
  DEFAULT_LEASE_NAME,
  DEFAULT_POLICY_NAMESPACE,
  OptionsError,
  parseControllerOptions,
  startController,
  type ControllerOptions,
  type RunningController,
} from "./manager.ts";
export { grantInformer, namespaceInformer, patchJobInformer, reportInformer } from "./caches.ts";
export { ReportImages, Tenancy } from "./tenancy.ts";
