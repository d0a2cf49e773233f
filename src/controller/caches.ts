// The caches the controller decides from, and the API serves from: informers on
// VulnerabilityReports (kept as summaries), PatchJobs (without managedFields) and
// PatchPolicies, per watched namespace or cluster-wide.
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  GRANT_PLURAL,
  GROUP,
  type PatchJob,
  type PatchPolicy,
  PLURAL,
  POLICY_PLURAL,
  REPORT_GROUP,
  REPORT_PLURAL,
  REPORT_VERSION,
  type TenantGrant,
  VERSION,
} from "../api/index.ts";
import { type ReportSummary, summarizeReport } from "../decide/index.ts";
import { Informer, type ListPage, mergedStore, type RawObject, type Store } from "../kube/index.ts";

import type { Logger } from "../util/index.ts";

/** Reports are ~150 KB each: list them in small pages. @default 50 */
export const DEFAULT_REPORT_PAGE_SIZE = 50;

interface Kind {
  group: string;
  version: string;
  plural: string;
}
const REPORTS: Kind = { group: REPORT_GROUP, version: REPORT_VERSION, plural: REPORT_PLURAL };
const PATCHJOBS: Kind = { group: GROUP, version: VERSION, plural: PLURAL };
const POLICIES: Kind = { group: GROUP, version: VERSION, plural: POLICY_PLURAL };
const GRANTS: Kind = { group: GROUP, version: VERSION, plural: GRANT_PLURAL };

export interface CacheOptions {
  kc: KubeConfig;
  /** Undefined: every namespace. */
  namespace?: string;
  resyncMs?: number;
  log?: Logger;
  /** A name prefix for logs and metrics ("api/" for the API's own caches). */
  prefix?: string;
}

function informer<T>(
  kind: Kind,
  o: CacheOptions,
  transform: (raw: RawObject) => T,
  extra: { pageSize?: number; resourceVersion: (t: T) => string | undefined },
): Informer<T> {
  const api = o.kc.makeApiClient(CustomObjectsApi);
  const ns = o.namespace;
  const { group, version, plural } = kind;
  return new Informer<T>({
    name: `${o.prefix ?? ""}${plural}${ns ? `/${ns}` : ""}`,
    kc: o.kc,
    list: async (p): Promise<ListPage> =>
      (ns
        ? await api.listNamespacedCustomObject({
            group,
            version,
            plural,
            namespace: ns,
            limit: p.limit,
            _continue: p.continueToken,
          })
        : await api.listClusterCustomObject({
            group,
            version,
            plural,
            limit: p.limit,
            _continue: p.continueToken,
          })) as ListPage,
    watchPath: `/apis/${group}/${version}${ns ? `/namespaces/${ns}` : ""}/${plural}`,
    transform,
    resourceVersion: extra.resourceVersion,
    ...(extra.pageSize ? { pageSize: extra.pageSize } : {}),
    ...(o.resyncMs ? { resyncMs: o.resyncMs } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
}

export function reportInformer(o: CacheOptions): Informer<ReportSummary> {
  return informer(REPORTS, o, (raw) => summarizeReport(raw), {
    pageSize: DEFAULT_REPORT_PAGE_SIZE,
    resourceVersion: (s) => s.resourceVersion,
  });
}

export function patchJobInformer(o: CacheOptions): Informer<PatchJob> {
  return informer(PATCHJOBS, o, slimPatchJob, { resourceVersion: (p) => p.metadata.resourceVersion });
}

export function policyInformer(o: CacheOptions): Informer<PatchPolicy> {
  return informer(POLICIES, o, (raw) => raw as unknown as PatchPolicy, {
    resourceVersion: (p) => p.metadata.resourceVersion,
  });
}

/** TenantGrants are cluster-scoped: one informer, whatever namespaces are watched. */
export function grantInformer(o: Omit<CacheOptions, "namespace">): Informer<TenantGrant> {
  return informer(GRANTS, o, (raw) => raw as unknown as TenantGrant, {
    resourceVersion: (g) => g.metadata.resourceVersion,
  });
}

/** What the tenancy rules need of a Namespace: its name and labels. */
export interface NamespaceLabels {
  name: string;
  labels: Record<string, string>;
  resourceVersion?: string;
}

export function namespaceInformer(o: Omit<CacheOptions, "namespace">): Informer<NamespaceLabels> {
  const api = o.kc.makeApiClient(CoreV1Api);
  return new Informer<NamespaceLabels>({
    name: `${o.prefix ?? ""}namespaces`,
    kc: o.kc,
    list: async (p) =>
      (await api.listNamespace({ limit: p.limit, _continue: p.continueToken })) as unknown as ListPage,
    watchPath: "/api/v1/namespaces",
    transform: (raw) => {
      const m = (raw.metadata ?? {}) as {
        name?: string;
        labels?: Record<string, string>;
        resourceVersion?: string;
      };
      return {
        name: m.name ?? "",
        labels: m.labels ?? {},
        ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      };
    },
    resourceVersion: (n) => n.resourceVersion,
    ...(o.resyncMs ? { resyncMs: o.resyncMs } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
}

/**
 * What the controller keeps of a PatchJob: everything but managedFields (often the
 * largest part of a small object, and never read here).
 */
export function slimPatchJob(raw: RawObject): PatchJob {
  const { managedFields: _mf, ...metadata } = (raw.metadata ?? {}) as Record<string, unknown>;
  return { ...(raw as unknown as PatchJob), metadata: metadata as unknown as PatchJob["metadata"] };
}

/** One informer per namespace (or one for all), read as one store. */
export class CacheSet<T> {
  readonly informers: Informer<T>[];
  readonly store: Store<T>;
  constructor(informers: Informer<T>[]) {
    this.informers = informers;
    this.store = mergedStore(informers);
  }
  run(signal: AbortSignal): Promise<void>[] {
    return this.informers.map((i) => i.run(signal));
  }
  synced(): boolean {
    return this.informers.every((i) => i.hasSynced());
  }
  waitForSync(signal: AbortSignal): Promise<void> {
    return Promise.all(this.informers.map((i) => i.waitForSync(signal))).then(() => {});
  }
  on(h: Parameters<Informer<T>["on"]>[0]): void {
    for (const i of this.informers) i.on(h);
  }
}
