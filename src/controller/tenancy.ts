// What the tenancy rules (src/decide/tenancy.ts) need to know, kept current from the
// caches: the TenantGrants (compiled once per change), each namespace's labels, and
// which images each namespace's VulnerabilityReports name. The controller asks it before
// publishing a PatchJob, the API before creating one: the same answer for both.
import type { PatchJob, TenantGrant } from "../api/index.ts";
import {
  checkTenancy,
  compileGrant,
  type CompiledGrant,
  grantsFor,
  type ImageName,
  type ReportSummary,
  type TenancyVerdict,
} from "../decide/index.ts";
import type { Store } from "../kube/index.ts";
import type { NamespaceLabels } from "./caches.ts";

interface Named {
  tag?: string;
  digest: string;
  indexDigest?: string;
}

/**
 * Which images each namespace's reports name: namespace + `registry/repository` ->
 * report key -> tag and digests. Kept from report events, so a question is a map lookup
 * however many reports there are.
 */
export class ReportImages {
  readonly #byRepo = new Map<string, Map<string, Named>>();

  static #repoKey(namespace: string, registry: string, repository: string): string {
    return `${namespace}\n${registry}/${repository}`;
  }

  set(key: string, s: ReportSummary | undefined, old?: ReportSummary): void {
    if (old?.facts) this.delete(key, old);
    const f = s?.facts;
    if (!f) return;
    const im = f.imageMetadata;
    const k = ReportImages.#repoKey(f.metadata.namespace ?? "", im.registryURI, im.repository);
    let m = this.#byRepo.get(k);
    if (!m) this.#byRepo.set(k, (m = new Map()));
    m.set(key, {
      ...(im.tag ? { tag: im.tag } : {}),
      digest: im.digest,
      ...(im.indexDigest ? { indexDigest: im.indexDigest } : {}),
    });
  }

  delete(key: string, s: ReportSummary | undefined): void {
    const f = s?.facts;
    if (!f) return;
    const k = ReportImages.#repoKey(
      f.metadata.namespace ?? "",
      f.imageMetadata.registryURI,
      f.imageMetadata.repository,
    );
    const m = this.#byRepo.get(k);
    m?.delete(key);
    if (m?.size === 0) this.#byRepo.delete(k);
  }

  /** True when a report of `namespace` names this image: by digest or index digest; by tag when no digest is asked for. */
  names(namespace: string, i: ImageName): boolean {
    const m = this.#byRepo.get(ReportImages.#repoKey(namespace, i.registry, i.repository));
    if (!m) return false;
    for (const n of m.values()) {
      if (i.digest ? i.digest === n.digest || i.digest === n.indexDigest : !!i.tag && i.tag === n.tag)
        return true;
    }
    return false;
  }

  /** Keep it current from a report cache. */
  follow(
    on: (h: {
      add: (k: string, s: ReportSummary) => void;
      update: (k: string, s: ReportSummary, old: ReportSummary) => void;
      delete: (k: string, s: ReportSummary) => void;
    }) => void,
  ): void {
    on({
      add: (k, s) => this.set(k, s),
      update: (k, s, old) => this.set(k, s, old),
      delete: (k, s) => this.delete(k, s),
    });
  }
}

export interface TenancyDeps {
  grants: Store<TenantGrant>;
  namespaces: Store<NamespaceLabels>;
  images: ReportImages;
  /**
   * The `registry/repository` a global policy (the administrator's) sends this PatchJob's
   * image to, when its policyRef names one.
   */
  globalPolicyTarget?: (pj: PatchJob) => string | undefined;
}

export class Tenancy {
  readonly #d: TenancyDeps;
  #compiled?: { valid: CompiledGrant[]; invalid: Map<string, string[]> };

  constructor(d: TenancyDeps) {
    this.#d = d;
  }

  /** A grant changed: compile again on the next question. */
  invalidate(): void {
    this.#compiled = undefined;
  }

  compiled(): { valid: CompiledGrant[]; invalid: Map<string, string[]> } {
    if (!this.#compiled) {
      const valid: CompiledGrant[] = [];
      const invalid = new Map<string, string[]>();
      for (const g of this.#d.grants.values()) {
        const r = compileGrant(g);
        if (r.ok) valid.push(r.value);
        else invalid.set(g.metadata.name, r.problems);
      }
      this.#compiled = { valid, invalid };
    }
    return this.#compiled;
  }

  /** The grants for a namespace. */
  grantsOf(namespace: string): CompiledGrant[] {
    return grantsFor(this.compiled().valid, namespace, this.#d.namespaces.get(namespace)?.labels ?? {});
  }

  verdict(pj: Pick<PatchJob, "metadata" | "spec">): TenancyVerdict {
    const namespace = pj.metadata.namespace ?? "";
    const target = this.#d.globalPolicyTarget?.(pj as PatchJob);
    return checkTenancy(pj.spec, {
      namespace,
      grants: this.grantsOf(namespace),
      reportNames: (i) => this.#d.images.names(namespace, i),
      ...(target ? { globalPolicyTarget: target } : {}),
    });
  }
}
