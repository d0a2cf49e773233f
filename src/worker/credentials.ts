// Registry credentials follow the tenant. For each registry a patch reads from or pushes
// to, the PatchJob's own namespace provides them: the Secret its PatchPolicy names
// (spec.credentialsSecret, same namespace only), else the authSecret of a sbomscanner
// Registry of that namespace for that host. The workers' own credentials (their
// DOCKER_CONFIG, the chart's registry.credentialsSecret) are used only where a
// TenantGrant gives the namespace globalCredentials. Nothing is lent silently: a host
// whose only credentials are the workers' own, withheld, is named when the registry
// then refuses (reason CredentialsNotAllowed).
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  GRANT_PLURAL,
  GROUP,
  PatchError,
  type PatchJob,
  type PatchPolicy,
  POLICY_PLURAL,
  Reason,
  SCANNER_GROUP,
  SCANNER_REGISTRY_PLURAL,
  SCANNER_VERSION,
  type ScannerRegistry,
  type TenantGrant,
  VERSION,
} from "../api/index.ts";
import { compileGrant, grantsFor, mayUseGlobalCredentials, targetRef } from "../decide/index.ts";
import { apiMessage, isNotFound, statusCode } from "../kube/index.ts";
import { type Credential, normaliseHost, parseDockerConfig } from "../registry/index.ts";

/** Where a host's credentials came from (for logs and messages; never the content). */
export type CredentialOrigin =
  | { kind: "policy"; secret: string }
  | { kind: "registry"; registry: string; secret: string }
  | { kind: "global" };

export interface TenantCredentials {
  /** By registry host: what this attempt may use. */
  creds: Map<string, Credential>;
  origins: Record<string, CredentialOrigin>;
  /** Hosts the workers have credentials for that this namespace may not use. */
  withheld: string[];
}

/** What the namespace offers, loaded (see loadSources). */
export interface CredentialSources {
  policy?: { secret: string; creds: Map<string, Credential> };
  registries: Array<{ registry: string; host: string; secret: string; creds: Map<string, Credential> }>;
  /** Asked only for a host the namespace has nothing for. */
  globalAllowed: () => Promise<boolean>;
  global: ReadonlyMap<string, Credential>;
}

/** The choice, per host: the policy's Secret, a Registry's authSecret, the workers' own if granted. */
export async function chooseCredentials(hosts: string[], s: CredentialSources): Promise<TenantCredentials> {
  const out: TenantCredentials = { creds: new Map(), origins: {}, withheld: [] };
  for (const raw of new Set(hosts.map(normaliseHost))) {
    const fromPolicy = s.policy?.creds.get(raw);
    if (fromPolicy) {
      out.creds.set(raw, fromPolicy);
      out.origins[raw] = { kind: "policy", secret: s.policy!.secret };
      continue;
    }
    const reg = s.registries.find((r) => r.host === raw);
    // A Registry's Secret is for that registry: its one entry counts whatever host it names.
    const fromRegistry = reg
      ? (reg.creds.get(raw) ?? (reg.creds.size === 1 ? [...reg.creds.values()][0] : undefined))
      : undefined;
    if (reg && fromRegistry) {
      out.creds.set(raw, fromRegistry);
      out.origins[raw] = { kind: "registry", registry: reg.registry, secret: reg.secret };
      continue;
    }
    const global = s.global.get(raw);
    if (!global) continue;
    if (await s.globalAllowed()) {
      out.creds.set(raw, global);
      out.origins[raw] = { kind: "global" };
    } else out.withheld.push(raw);
  }
  return out;
}

/** How the worker reads what a namespace offers. */
export interface SourceReader {
  /** dockerconfigjson text of a Secret's `.dockerconfigjson` (or `config.json`) key. */
  secret(namespace: string, name: string, why: string): Promise<Map<string, Credential>>;
  policy(namespace: string, name: string): Promise<PatchPolicy | undefined>;
  registries(namespace: string): Promise<ScannerRegistry[]>;
  grants(): Promise<TenantGrant[]>;
  namespaceLabels(namespace: string): Promise<Record<string, string>>;
}

export async function loadSources(
  pj: PatchJob,
  hosts: string[],
  r: SourceReader,
  global: ReadonlyMap<string, Credential>,
): Promise<CredentialSources> {
  const ns = pj.metadata.namespace ?? "";
  const wanted = new Set(hosts.map(normaliseHost));
  const sources: CredentialSources = { registries: [], global, globalAllowed: async () => false };
  const ref = pj.spec.policyRef;
  if (ref && (ref.namespace ?? ns) === ns) {
    const secret = (await r.policy(ns, ref.name))?.spec.credentialsSecret;
    if (secret) sources.policy = { secret, creds: await r.secret(ns, secret, `PatchPolicy ${ref.name}`) };
  }
  for (const reg of await r.registries(ns)) {
    const host = reg.spec?.uri ? normaliseHost(reg.spec.uri) : "";
    const secret = reg.spec?.authSecret;
    if (!secret || !wanted.has(host) || sources.registries.some((x) => x.host === host)) continue;
    sources.registries.push({
      registry: reg.metadata.name,
      host,
      secret,
      creds: await r.secret(ns, secret, `Registry ${reg.metadata.name}`),
    });
  }
  let allowed: Promise<boolean> | undefined;
  sources.globalAllowed = () =>
    (allowed ??= (async () => {
      const grants = (await r.grants()).flatMap((g) => {
        const c = compileGrant(g);
        return c.ok ? [c.value] : [];
      });
      return mayUseGlobalCredentials(grantsFor(grants, ns, await r.namespaceLabels(ns)));
    })());
  return sources;
}

function unavailable(message: string, cause?: unknown): PatchError {
  return new PatchError(Reason.CredentialsUnavailable, message, cause ? { cause } : {});
}

export function kubeSourceReader(kc: KubeConfig): SourceReader {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  return {
    async secret(namespace, name, why) {
      let s;
      try {
        s = await core.readNamespacedSecret({ namespace, name });
      } catch (err) {
        if (isNotFound(err))
          throw unavailable(`Secret ${namespace}/${name}, named by ${why}, does not exist`, err);
        if (statusCode(err) === 403)
          throw unavailable(
            `the worker may not read Secret ${namespace}/${name} (named by ${why}): give it get on Secrets in ${namespace} (the chart's worker.namespaces)`,
            err,
          );
        throw err;
      }
      const b64 = s.data?.[".dockerconfigjson"] ?? s.data?.["config.json"];
      if (!b64) throw unavailable(`Secret ${namespace}/${name} (named by ${why}) has no .dockerconfigjson`);
      try {
        return parseDockerConfig(Buffer.from(b64, "base64").toString("utf8"));
      } catch (err) {
        throw unavailable(`Secret ${namespace}/${name} (named by ${why}): ${(err as Error).message}`, err);
      }
    },
    async policy(namespace, name) {
      return (await custom
        .getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: POLICY_PLURAL, namespace, name })
        .catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)))) as PatchPolicy | undefined;
    },
    async registries(namespace) {
      try {
        const l = (await custom.listNamespacedCustomObject({
          group: SCANNER_GROUP,
          version: SCANNER_VERSION,
          plural: SCANNER_REGISTRY_PLURAL,
          namespace,
        })) as { items?: ScannerRegistry[] };
        return l.items ?? [];
      } catch (err) {
        // No sbomscanner Registry kind here: nothing to offer.
        if (isNotFound(err)) return [];
        throw new Error(`cannot list sbomscanner Registries in ${namespace}: ${apiMessage(err)}`, {
          cause: err,
        });
      }
    },
    async grants() {
      const l = (await custom.listClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: GRANT_PLURAL,
      })) as {
        items?: TenantGrant[];
      };
      return l.items ?? [];
    },
    async namespaceLabels(namespace) {
      return (await core.readNamespace({ name: namespace })).metadata?.labels ?? {};
    },
  };
}

/** The registry hosts an attempt touches: where it reads, and where it pushes. */
export function hostsOf(pj: PatchJob): string[] {
  const img = pj.spec.image;
  if (!img) return [];
  const hosts = [img.registryURI];
  try {
    hosts.push(targetRef({ image: img, target: pj.spec.target }).registry);
  } catch {
    // An unusable target fails the attempt as InvalidSpec; the source's host is enough here.
  }
  return hosts;
}

/** One line for the log: which host's credentials came from where (never the content). */
export function describeCredentials(t: TenantCredentials): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [host, o] of Object.entries(t.origins))
    out[host] =
      o.kind === "policy"
        ? `policy Secret ${o.secret}`
        : o.kind === "registry"
          ? `Registry ${o.registry} (Secret ${o.secret})`
          : "the workers' own (granted)";
  for (const host of t.withheld) out[host] = "none (the workers' own are not granted to this namespace)";
  return out;
}

/**
 * A registry refusal where the workers held credentials the namespace may not use: say
 * so, and who may allow it.
 */
export function explainDenied(err: unknown, pj: PatchJob, t: TenantCredentials | undefined): unknown {
  if (!t?.withheld.length || !(err instanceof PatchError) || err.reason !== Reason.RegistryDenied) return err;
  return new PatchError(
    Reason.CredentialsNotAllowed,
    `${err.message}; namespace ${pj.metadata.namespace} has no credentials of its own for ${t.withheld.join(", ")} (a PatchPolicy's credentialsSecret, or a sbomscanner Registry's authSecret), and the workers' own are not granted to it (a TenantGrant with globalCredentials)`,
    { cause: err },
  );
}
