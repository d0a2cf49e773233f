// What a namespace may patch, and where it may push: pure. By default a namespace's
// PatchJobs read only images its own VulnerabilityReports name and push only to the
// repository each image came from (a policy's tag suffix or template); an administrator
// widens that per namespace with a cluster-scoped TenantGrant (sources, targets, the
// workers' own credentials). A global policy (allNamespaces, in the controller's own
// namespace) is the administrator's too: where it sends an image counts as granted.
import { RE2JS } from "re2js";
import { type PatchJobSpec, Reason, type TenantGrant } from "../api/index.ts";
import { sourceRef, targetRef } from "./naming.ts";
import { labelsMatch } from "./policy.ts";

export interface CompiledGrant {
  name: string;
  grant: TenantGrant;
  sources: RE2JS[];
  targets: RE2JS[];
  globalCredentials: boolean;
}

export type GrantResult = { ok: true; value: CompiledGrant } | { ok: false; problems: string[] };

export function compileGrant(g: TenantGrant): GrantResult {
  const problems: string[] = [];
  const compile = (field: string) => (src: string) => {
    try {
      return [RE2JS.compile(`^(?:${src})$`)];
    } catch (err) {
      problems.push(`spec.${field}: ${JSON.stringify(src)}: ${(err as Error).message}`);
      return [];
    }
  };
  const sources = (g.spec.sources ?? []).flatMap(compile("sources"));
  const targets = (g.spec.targets ?? []).flatMap(compile("targets"));
  if (!g.spec.namespaces?.length && !g.spec.namespaceSelector)
    problems.push("spec: name the namespaces or give a namespaceSelector");
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    value: {
      name: g.metadata.name,
      grant: g,
      sources,
      targets,
      globalCredentials: !!g.spec.globalCredentials,
    },
  };
}

/** The grants for a namespace (by name, or by its labels). */
export function grantsFor(
  grants: Iterable<CompiledGrant>,
  namespace: string,
  labels: Record<string, string>,
): CompiledGrant[] {
  return [...grants].filter(
    (g) =>
      (g.grant.spec.namespaces ?? []).includes(namespace) ||
      (!!g.grant.spec.namespaceSelector && labelsMatch(g.grant.spec.namespaceSelector, labels)),
  );
}

/** An image as the rules see it: `registry/repository`, and the digest the worker reads (or, without one, the tag). */
export interface ImageName {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export interface TenancyFacts {
  namespace: string;
  /** The grants that apply to this namespace. */
  grants: CompiledGrant[];
  /** True when a VulnerabilityReport of this namespace names this image (by digest or index digest; by tag when there is no digest). */
  reportNames: (image: ImageName) => boolean;
  /**
   * When the PatchJob's policyRef names a global policy (allNamespaces, in the
   * controller's namespace: the administrator's), the `registry/repository` that policy
   * sends this image to: granted. Derived from the policy, never from the PatchJob, so a
   * PatchJob that names the policy but another target gains nothing.
   */
  globalPolicyTarget?: string;
}

export type TenancyVerdict =
  | { ok: true }
  | { ok: false; reason: typeof Reason.SourceNotAllowed | typeof Reason.TargetNotAllowed; message: string };

const repoOf = (i: { registry: string; repository: string }) => `${i.registry}/${i.repository}`;

/**
 * May this PatchJob read its source and push to its target? Its image must be one a
 * report of its namespace names (or a grant allows), whatever its `source` says: a
 * report's PatchJob names its report's image, and a PatchJob written by hand with
 * `source: report` proves nothing.
 */
export function checkTenancy(spec: PatchJobSpec, f: TenancyFacts): TenancyVerdict {
  if (!spec.image) return { ok: true };
  const img = spec.image;
  // What the worker will read: pinned by digest when there is one (sourceRef).
  const read = sourceRef({ image: img });
  const source: ImageName = {
    registry: read.registry,
    repository: read.repository,
    ...(read.digest ? { digest: read.digest } : read.tag ? { tag: read.tag } : {}),
  };
  const grant = "an administrator can allow it with a TenantGrant (kubectl explain tenantgrant.spec)";
  if (!f.reportNames(source) && !f.grants.some((g) => g.sources.some((p) => p.matches(repoOf(source)))))
    return {
      ok: false,
      reason: Reason.SourceNotAllowed,
      message: `namespace ${f.namespace} may patch only images its own VulnerabilityReports name, and none names ${repoOf(source)}${source.digest ? `@${source.digest}` : source.tag ? `:${source.tag}` : ""}; ${grant} (spec.sources)`,
    };
  let target;
  try {
    target = targetRef({ image: img, target: spec.target });
  } catch (err) {
    // Nothing to compare with, so nothing is allowed (the worker would refuse it too).
    return {
      ok: false,
      reason: Reason.TargetNotAllowed,
      message: `namespace ${f.namespace}: the target is not usable: ${(err as Error).message}`,
    };
  }
  const same = target.registry === source.registry && target.repository === source.repository;
  if (
    same ||
    f.globalPolicyTarget === repoOf(target) ||
    f.grants.some((g) => g.targets.some((p) => p.matches(repoOf(target))))
  )
    return { ok: true };
  return {
    ok: false,
    reason: Reason.TargetNotAllowed,
    message: `namespace ${f.namespace} may push patches only to the repository each image came from (${repoOf(source)}), not ${repoOf(target)}; ${grant} (spec.targets)`,
  };
}

/** May patches of this namespace use the workers' own registry credentials? */
export function mayUseGlobalCredentials(grants: CompiledGrant[]): boolean {
  return grants.some((g) => g.globalCredentials);
}
