// The controller's view of PatchPolicies: compiled from the informer's cache, the
// policy for a report, the grants of Scheduled runs, and the gates on publishing
// (maxInFlight, the time window). The rules themselves are pure, in src/decide; this
// file holds the state they need.
import { Mode, type PatchJob, type PatchPolicy, Phase, Reason } from "../api/index.ts";
import {
  choosePolicy,
  type CompiledPolicy,
  compilePolicy,
  type Gate,
  msUntilWindow,
  type PolicySubject,
  policyLibraries,
  policyTarget,
  type PolicyVerdict,
  type ReportFacts,
} from "../decide/index.ts";
import type { Store } from "../kube/index.ts";

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
        else invalid.set(policyObjectKey(p), r.problems);
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
    const target = policyTarget(policy.policy.spec, { ...f.imageMetadata }, this.#clock());
    return {
      kind: "patch",
      policy,
      settings: {
        name: policy.name,
        namespace: policy.namespace,
        ...(policy.mode === Mode.DryRun ? { dryRun: true } : {}),
        ...(target ? { target } : {}),
        ...(policy.policy ? { libraries: policyLibraries(policy.policy.spec) } : {}),
      },
    };
  }

  grant(reportKey: string, p: CompiledPolicy): void {
    this.#grants.set(reportKey, policyKey(p));
  }

  /** A report's grant is used up once a decision was made and applied with it. */
  consumeGrant(reportKey: string): void {
    this.#grants.delete(reportKey);
  }

  /**
   * Whether a PatchJob of a policy may be published now: undefined, or why not and when
   * to look again. maxInFlight counts the policy's Queued and Running PatchJobs in the
   * cache plus those published in the last few seconds (the cache is behind our writes:
   * see published()).
   */
  gate(pj: PatchJob, patchJobs: Store<PatchJob>): Gate | undefined {
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
      // The slot is this PatchJob's from now on: reconciles of other keys run at the same
      // time, and one that asks before this one's publish reaches the cache must see it
      // (a reservation that is not used lapses with the recent entries, after 10 s).
      recent.set(self, now.getTime());
      this.#recent.set(key, recent);
    }
    return undefined;
  }

  /**
   * When the PatchJob's policyRef names a global policy (the administrator's), the
   * `registry/repository` that policy sends the PatchJob's image to: the tenancy rules
   * count it as granted. Computed from the policy, never taken from the PatchJob.
   */
  globalPolicyTarget(pj: PatchJob): string | undefined {
    const ref = pj.spec.policyRef;
    const img = pj.spec.image;
    if (!ref || !img) return undefined;
    const p = this.compiled().valid.find(
      (c) => c.global && c.name === ref.name && c.namespace === (ref.namespace ?? pj.metadata.namespace),
    );
    if (!p) return undefined;
    const t = p.policy.spec.target;
    return `${t?.registry ?? img.registryURI}/${t?.repository ?? img.repository}`;
  }

  /** The rollout settings of the PatchJob's policy, or a manual PatchJob's own (none: Off). */
  rolloutOf(pj: PatchJob): PatchPolicy["spec"]["rollout"] {
    const ref = pj.spec.policyRef;
    if (!ref) return pj.spec.rollout;
    const p = this.compiled().valid.find(
      (c) => c.name === ref.name && c.namespace === (ref.namespace ?? pj.metadata.namespace),
    );
    return p?.policy.spec.rollout;
  }

  /** The PatchJob's policy asks sbomscanner for a scan of each patched image at once. */
  wantsScan(pj: PatchJob): boolean {
    const ref = pj.spec.policyRef;
    if (!ref) return false;
    const p = this.compiled().valid.find(
      (c) => c.name === ref.name && c.namespace === (ref.namespace ?? pj.metadata.namespace),
    );
    return !!p?.policy.spec.verification?.requestScan;
  }

  /** A PatchJob of a policy was published: it counts as in flight until the cache shows it. */
  published(pj: PatchJob): void {
    const ref = pj.spec.policyRef;
    if (!ref) return;
    const key = `${ref.namespace ?? pj.metadata.namespace}/${ref.name}`;
    const recent = this.#recent.get(key) ?? new Map<string, number>();
    recent.set(`${pj.metadata.namespace}/${pj.metadata.name}`, this.#clock().getTime());
    this.#recent.set(key, recent);
  }
}

export function policyObjectKey(p: PatchPolicy): string {
  return `${p.metadata.namespace ?? ""}/${p.metadata.name}`;
}

export function policyKey(p: CompiledPolicy): string {
  return `${p.namespace}/${p.name}`;
}
