// The controller's view of PatchPolicies: compiled from the informer's cache, the
// policy for a report, the gates on publishing (maxInFlight, the time window), the
// schedule runner and the status writer. The rules themselves are pure, in
// src/api/policy.ts and src/api/cron.ts; this file holds the state and the I/O.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import {
  GROUP,
  Mode,
  POLICY_PLURAL,
  Phase,
  Reason,
  VERSION,
  choosePolicy,
  compilePolicy,
  msUntilWindow,
  nextRun,
  policyTarget,
  setCondition,
  type CompiledPolicy,
  type DecideSettings,
  type PatchJob,
  type PatchPolicy,
  type PatchPolicyStatus,
  type PolicySubject,
  type ReportFacts,
} from "../api/index.ts";
import type { Store } from "../kube/informer.ts";
import { isConflict } from "../kube/errors.ts";
import type { Logger } from "../util/log.ts";
import { errorMessage } from "../util/errors.ts";

export type Clock = () => Date;

export function subjectOf(f: ReportFacts): PolicySubject {
  return {
    namespace: f.metadata.namespace ?? "",
    labels: f.metadata.labels ?? {},
    registryURI: f.imageMetadata.registryURI,
    repository: f.imageMetadata.repository,
    ...(f.imageMetadata.tag ? { tag: f.imageMetadata.tag } : {}),
    severity: f.severity,
  };
}

/** What reconcile needs to know about the policy for one report. */
export type PolicyVerdict =
  | { kind: "none" }
  | { kind: "disabled"; policy: CompiledPolicy }
  | { kind: "waiting"; policy: CompiledPolicy }
  | { kind: "patch"; policy: CompiledPolicy; settings: NonNullable<DecideSettings["policy"]> };

export class PolicySet {
  readonly #store: Store<PatchPolicy>;
  readonly #controllerNamespace: string;
  readonly #clock: Clock;
  #compiled?: { valid: CompiledPolicy[]; invalid: Map<string, string[]> };
  /** Reports a Scheduled policy may patch now: report key -> policy key (set by a run, used once). */
  readonly #grants = new Map<string, string>();
  /** Recently published PatchJobs per policy, not yet visible as Queued in the cache. */
  readonly #recent = new Map<string, Map<string, number>>();

  constructor(store: Store<PatchPolicy>, controllerNamespace: string, clock: Clock = () => new Date()) {
    this.#store = store;
    this.#controllerNamespace = controllerNamespace;
    this.#clock = clock;
  }

  /** Forget the compiled set (a policy changed). */
  invalidate(): void {
    this.#compiled = undefined;
  }

  compiled(): { valid: CompiledPolicy[]; invalid: Map<string, string[]> } {
    if (!this.#compiled) {
      const valid: CompiledPolicy[] = [];
      const invalid = new Map<string, string[]>();
      for (const p of this.#store.values()) {
        const r = compilePolicy(p, this.#controllerNamespace);
        if (r.ok) valid.push(r.value);
        else invalid.set(keyOf(p), r.problems);
      }
      this.#compiled = { valid, invalid };
    }
    return this.#compiled;
  }

  choose(f: ReportFacts): CompiledPolicy | undefined {
    return choosePolicy(this.compiled().valid, subjectOf(f));
  }

  verdict(reportKey: string, f: ReportFacts): PolicyVerdict {
    const policy = this.choose(f);
    if (!policy) return { kind: "none" };
    if (policy.mode === Mode.Disabled) return { kind: "disabled", policy };
    if (policy.mode === Mode.Scheduled && this.#grants.get(reportKey) !== policyKey(policy))
      return { kind: "waiting", policy };
    this.#grants.delete(reportKey);
    const target = policyTarget(policy.policy.spec, { ...f.imageMetadata }, this.#clock());
    return {
      kind: "patch",
      policy,
      settings: {
        name: policy.name,
        namespace: policy.namespace,
        ...(policy.mode === Mode.DryRun ? { dryRun: true } : {}),
        ...(target ? { target } : {}),
      },
    };
  }

  grant(reportKey: string, p: CompiledPolicy): void {
    this.#grants.set(reportKey, policyKey(p));
  }

  /**
   * Whether a PatchJob of a policy may be published now: undefined, or why not and when
   * to look again. maxInFlight counts the policy's Queued and Running PatchJobs in the
   * cache plus those published in the last few seconds (the cache is behind our writes).
   */
  gate(
    pj: PatchJob,
    patchJobs: Store<PatchJob>,
  ): { reason: string; message: string; retryMs: number } | undefined {
    const ref = pj.spec.policyRef;
    if (!ref) return undefined;
    const p = this.compiled().valid.find(
      (c) => c.name === ref.name && c.namespace === (ref.namespace ?? c.namespace),
    );
    if (!p) return undefined;
    const limits = p.policy.spec.limits;
    const now = this.#clock();
    if (limits?.window) {
      const wait = msUntilWindow(limits.window, now);
      if (wait > 0)
        return {
          reason: Reason.OutsideWindow,
          message: `waiting for policy ${p.name}'s window ${limits.window.start}-${limits.window.end} ${limits.window.timeZone ?? "UTC"}`,
          retryMs: Math.min(wait, 60_000),
        };
    }
    if (limits?.maxInFlight) {
      const key = policyKey(p);
      const self = `${pj.metadata.namespace}/${pj.metadata.name}`;
      const recent = this.#recent.get(key) ?? new Map<string, number>();
      for (const [k, t] of recent) if (now.getTime() - t > 10_000) recent.delete(k);
      const busy = new Set<string>([...recent.keys()]);
      for (const other of patchJobs.values()) {
        const r = other.spec.policyRef;
        if (r?.name !== p.name || (r.namespace ?? p.namespace) !== p.namespace) continue;
        const ph = other.status?.phase;
        if (
          (ph === Phase.Queued || ph === Phase.Running) &&
          other.status?.reason !== Reason.Grouped &&
          other.status?.observedGeneration === other.metadata.generation
        )
          busy.add(`${other.metadata.namespace}/${other.metadata.name}`);
      }
      busy.delete(self);
      if (busy.size >= limits.maxInFlight)
        return {
          reason: Reason.PolicyLimit,
          message: `waiting: policy ${p.name} has ${busy.size} of at most ${limits.maxInFlight} patches in flight`,
          retryMs: 3_000,
        };
      recent.set(self, now.getTime());
      this.#recent.set(key, recent);
    }
    return undefined;
  }
}

export function keyOf(p: PatchPolicy): string {
  return `${p.metadata.namespace ?? ""}/${p.metadata.name}`;
}

function policyKey(p: CompiledPolicy): string {
  return `${p.namespace}/${p.name}`;
}

function toTime(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * Run the Scheduled policies: when a policy's next time has come, grant each report it
 * is the policy for one patch decision and queue it; record the run in the status.
 * A controller that was down over several run times runs once (as a CronJob does).
 */
export async function runSchedules(o: {
  policies: PolicySet;
  store: Store<PatchPolicy>;
  reports: () => Iterable<[string, ReportFacts]>;
  enqueue: (key: string) => void;
  api: CustomObjectsApi;
  clock: Clock;
  started: Date;
  intervalMs: number;
  signal: AbortSignal;
  log: Logger;
  /** False while the reports are still being listed: a run then would miss some. */
  synced: () => boolean;
}): Promise<void> {
  const { signal } = o;
  // The runs made here, in case the status write is lost or the cache is behind it.
  const ran = new Map<string, number>();
  while (!signal.aborted) {
    const now = o.clock();
    for (const p of o.synced() ? o.policies.compiled().valid : []) {
      if (p.mode !== Mode.Scheduled || !p.cron) continue;
      const last = p.policy.status?.lastScheduleTime;
      const created = p.policy.metadata.creationTimestamp;
      const fromStatus = new Date(
        last ?? (created ? String(created instanceof Date ? created.toISOString() : created) : o.started),
      ).getTime();
      const base = new Date(Math.max(fromStatus, ran.get(policyKey(p)) ?? 0));
      const due = nextRun(p.cron, p.timeZone, base);
      if (!due || due.getTime() > now.getTime()) continue;
      let n = 0;
      for (const [key, facts] of o.reports()) {
        const chosen = o.policies.choose(facts);
        if (!chosen || policyKey(chosen) !== policyKey(p)) continue;
        o.policies.grant(key, p);
        o.enqueue(key);
        n++;
      }
      ran.set(policyKey(p), Math.max(due.getTime(), Math.floor(now.getTime() / 60_000) * 60_000));
      const next = nextRun(p.cron, p.timeZone, now);
      o.log.info(
        { policy: `${p.namespace}/${p.name}`, reports: n, next: next?.toISOString() },
        "scheduled run",
      );
      await writePolicyStatus(o.api, p.policy, {
        lastScheduleTime: toTime(due.getTime() > now.getTime() ? now : due),
        ...(next ? { nextScheduleTime: toTime(next) } : {}),
      }).catch((err: unknown) =>
        o.log.warn({ err: errorMessage(err) }, "could not record the scheduled run"),
      );
    }
    await new Promise<void>((r) => {
      const t = setTimeout(r, o.intervalMs);
      signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
    });
  }
}

/**
 * Keep each policy's status true: matched reports, PatchJobs that name it, the next
 * scheduled run, and Ready (False with the problems when the spec cannot be used).
 */
export async function writePolicyStatuses(o: {
  /** Told once when a policy becomes invalid (a Warning event on it). */
  onInvalid?: (policy: PatchPolicy, message: string) => void;
  policies: PolicySet;
  store: Store<PatchPolicy>;
  reports: () => Iterable<[string, ReportFacts]>;
  patchJobs: Store<PatchJob>;
  api: CustomObjectsApi;
  clock: Clock;
  log: Logger;
}): Promise<void> {
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
    const key = keyOf(policy);
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
    if (JSON.stringify(clean(status)) === JSON.stringify(clean(policy.status ?? {}))) continue;
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

async function writePolicyStatus(
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
