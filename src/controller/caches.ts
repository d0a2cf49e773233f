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
import {
  Informer,
  isNotFound,
  type ListPage,
  type ListStats,
  mergedStore,
  PARTIAL_METADATA_LIST,
  type RawObject,
  rawGetJSON,
  type Store,
} from "../kube/index.ts";

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
  /** Each completed list (metrics): the informer's name and what the list did. */
  onList?: (informer: string, stats: ListStats) => void;
}

function informer<T>(
  kind: Kind,
  o: CacheOptions,
  transform: (raw: RawObject) => T,
  extra: { pageSize?: number; resourceVersion: (t: T) => string | undefined; metadataRelist?: boolean },
): Informer<T> {
  const api = o.kc.makeApiClient(CustomObjectsApi);
  const ns = o.namespace;
  const { group, version, plural } = kind;
  const name = `${o.prefix ?? ""}${plural}${ns ? `/${ns}` : ""}`;
  const path = `/apis/${group}/${version}${ns ? `/namespaces/${ns}` : ""}/${plural}`;
  return new Informer<T>({
    name,
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
    watchPath: path,
    transform,
    resourceVersion: extra.resourceVersion,
    ...(extra.metadataRelist ? { metadataRelist: metadataRelist(o.kc, api, kind, path) } : {}),
    ...(o.onList ? { onList: (_n: number, stats: ListStats) => o.onList!(name, stats) } : {}),
    ...(extra.pageSize ? { pageSize: extra.pageSize } : {}),
    ...(o.resyncMs ? { resyncMs: o.resyncMs } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
}

/**
 * Reports: ~150 KB each, and the cache keeps only their summaries. A relist after the
 * first reads metadata only (a few hundred bytes a report) and gets in full just the
 * reports whose resourceVersion moved.
 */
export function reportInformer(o: CacheOptions): Informer<ReportSummary> {
  return informer(REPORTS, o, (raw) => summarizeReport(raw), {
    pageSize: DEFAULT_REPORT_PAGE_SIZE,
    resourceVersion: (s) => s.resourceVersion,
    metadataRelist: true,
  });
}

/**
 * A report's metadata is a few hundred bytes, so a page holds many: 10,000 reports
 * relist in two requests (about 3 MB), where the full list takes a hundred.
 */
export const METADATA_PAGE_SIZE = 5000;

/** Metadata pages (PartialObjectMetadataList), and one GET per object that moved. */
function metadataRelist(kc: KubeConfig, api: CustomObjectsApi, kind: Kind, path: string) {
  return {
    list: async (p: { limit: number; continueToken?: string }): Promise<ListPage> => {
      const q = new URLSearchParams({ limit: String(Math.max(p.limit, METADATA_PAGE_SIZE)) });
      if (p.continueToken) q.set("continue", p.continueToken);
      return (await rawGetJSON<ListPage>(kc, `${path}?${q}`, { accept: PARTIAL_METADATA_LIST })).value;
    },
    get: async (item: RawObject): Promise<RawObject | undefined> => {
      const m = item.metadata ?? {};
      return (await api
        .getNamespacedCustomObject({
          group: kind.group,
          version: kind.version,
          plural: kind.plural,
          namespace: String(m.namespace ?? ""),
          name: String(m.name ?? ""),
        })
        .catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)))) as RawObject | undefined;
    },
  };
}

export function patchJobInformer(o: CacheOptions): Informer<PatchJob> {
  // A relist of metadata too: one request for thousands of PatchJobs that did not move.
  return informer(PATCHJOBS, o, slimPatchJob, {
    resourceVersion: (p) => p.metadata.resourceVersion,
    metadataRelist: true,
  });
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
