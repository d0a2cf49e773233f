// Each policy's status kept true: matched reports, PatchJobs that name it, the next
// scheduled run, and Ready (False with the problems when the spec cannot be used).
// Written only when something changed.
import { isDeepStrictEqual } from "node:util";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import {
  GROUP,
  Mode,
  type PatchJob,
  type PatchPolicy,
  type PatchPolicyStatus,
  POLICY_PLURAL,
  setCondition,
  VERSION,
} from "../api/index.ts";
import { nextRun, type ReportFacts } from "../decide/index.ts";
import { isConflict, realClock, sleepOn, type Store } from "../kube/index.ts";

import { errorMessage, type Logger } from "../util/index.ts";

import { policyObjectKey, policyKey, type Clock, type PolicySet } from "./policy-set.ts";

export function toTime(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * Keep each policy's status true: matched reports, PatchJobs that name it, the next
 * scheduled run, and Ready (False with the problems when the spec cannot be used).
 */
export interface PolicyStatusOptions {
  /** Told once when a policy becomes invalid (a Warning event on it). */
  onInvalid?: (policy: PatchPolicy, message: string) => void;
  policies: PolicySet;
  store: Store<PatchPolicy>;
  reports: () => Iterable<[string, ReportFacts]>;
  patchJobs: Store<PatchJob>;
  api: CustomObjectsApi;
  clock: Clock;
  log: Logger;
}

/** Every `intervalMs` once the reports have listed, until `signal` aborts. */
export async function runPolicyStatuses(
  o: PolicyStatusOptions & { intervalMs: number; synced: () => boolean },
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    await sleepOn(realClock, o.intervalMs, signal);
    if (signal.aborted || !o.synced()) continue;
    await writePolicyStatuses(o).catch((err: unknown) =>
      o.log.warn({ err: errorMessage(err) }, "policy statuses not written"),
    );
  }
}

export async function writePolicyStatuses(o: PolicyStatusOptions): Promise<void> {
  const { valid, invalid } = o.policies.compiled();
  const matched = new Map<string, number>();
  for (const [, facts] of o.reports()) {
    const p = o.policies.choose(facts);
    if (p) matched.set(policyKey(p), (matched.get(policyKey(p)) ?? 0) + 1);
  }
  const created = new Map<string, number>();
  for (const pj of o.patchJobs.values()) {
    const r = pj.spec.policyRef;
    if (!r) continue;
    const k = `${r.namespace ?? pj.metadata.namespace}/${r.name}`;
    created.set(k, (created.get(k) ?? 0) + 1);
  }
  const now = o.clock();
  for (const policy of o.store.values()) {
    const key = policyObjectKey(policy);
    const problems = invalid.get(key);
    const c = valid.find((v) => policyKey(v) === key);
    const next = c?.mode === Mode.Scheduled && c.cron ? nextRun(c.cron, c.timeZone, now) : undefined;
    const gen = policy.metadata.generation ?? 1;
    const status: PatchPolicyStatus = {
      ...policy.status,
      observedGeneration: gen,
      matchedReports: c ? (matched.get(key) ?? 0) : 0,
      patchJobsCreated: created.get(key) ?? 0,
      ...(next ? { nextScheduleTime: toTime(next) } : { nextScheduleTime: undefined }),
      conditions: setCondition(
        policy.status?.conditions,
        problems
          ? {
              type: "Ready",
              status: "False",
              reason: "InvalidSpec",
              message: problems.join("; "),
              observedGeneration: gen,
            }
          : {
              type: "Ready",
              status: "True",
              reason: "Valid",
              message: `mode ${c?.mode ?? "?"}${c?.global ? ", all namespaces" : ""}`,
              observedGeneration: gen,
            },
        now,
      ),
    };
    // Compared as values: the apiserver returns keys sorted, we build them in our order.
    if (isDeepStrictEqual(clean(status), clean(policy.status ?? {}))) continue;
    const wasReady = policy.status?.conditions?.find((x) => x.type === "Ready");
    if (problems && (wasReady?.status !== "False" || wasReady.observedGeneration !== gen))
      o.onInvalid?.(policy, `the policy is not used: ${problems.join("; ")}`);
    await writePolicyStatus(o.api, policy, status).catch((err: unknown) => {
      if (!isConflict(err))
        o.log.warn({ policy: key, err: errorMessage(err) }, "could not write the policy status");
    });
  }
}

function clean<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export async function writePolicyStatus(
  api: CustomObjectsApi,
  p: PatchPolicy,
  patch: PatchPolicyStatus,
): Promise<void> {
  await api.replaceNamespacedCustomObjectStatus({
    group: GROUP,
    version: VERSION,
    plural: POLICY_PLURAL,
    namespace: p.metadata.namespace!,
    name: p.metadata.name,
    body: clean({ ...p, status: { ...p.status, ...patch } }),
  });
}
