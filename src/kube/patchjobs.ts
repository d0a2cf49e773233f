// Typed access to PatchJobs. Status writes are PUTs to /status carrying the
// resourceVersion that was read, so two writers never silently overwrite each other.
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  API_VERSION,
  GROUP,
  KIND,
  type PatchJob,
  type PatchJobSpec,
  type PatchJobStatus,
  PLURAL,
  VERSION,
} from "../api/index.ts";
import { ignoreNotFound } from "./errors.ts";

const G = { group: GROUP, version: VERSION, plural: PLURAL };

export interface PatchJobClient {
  get(namespace: string, name: string): Promise<PatchJob | undefined>;
  /** Every PatchJob in a namespace (all namespaces when undefined), optionally by label selector. */
  list(namespace?: string, labelSelector?: string): Promise<PatchJob[]>;
  create(pj: { metadata: PatchJob["metadata"]; spec: PatchJobSpec }): Promise<PatchJob>;
  /** Replace the spec (moves metadata.generation); conflicts if `pj` is stale. */
  updateSpec(pj: PatchJob, spec: PatchJobSpec): Promise<PatchJob>;
  /** Replace the status; conflicts if `pj` is stale. */
  updateStatus(pj: PatchJob, status: PatchJobStatus): Promise<PatchJob>;
  delete(namespace: string, name: string): Promise<void>;
}

/** Drop undefined values so a PUT does not carry them (JSON would anyway; this keeps objects comparable). */
function clean<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export function patchJobClient(kc: KubeConfig): PatchJobClient {
  const api = kc.makeApiClient(CustomObjectsApi);
  return {
    async get(namespace, name) {
      return (await ignoreNotFound(api.getNamespacedCustomObject({ ...G, namespace, name }))) as
        PatchJob | undefined;
    },
    async list(namespace, labelSelector) {
      const items: PatchJob[] = [];
      let _continue: string | undefined;
      do {
        const page = (
          namespace
            ? await api.listNamespacedCustomObject({ ...G, namespace, labelSelector, limit: 500, _continue })
            : await api.listClusterCustomObject({ ...G, labelSelector, limit: 500, _continue })
        ) as { items: PatchJob[]; metadata?: { continue?: string } };
        items.push(...page.items);
        _continue = page.metadata?.continue || undefined;
      } while (_continue);
      return items;
    },
    async create(pj) {
      const body = clean({ apiVersion: API_VERSION, kind: KIND, metadata: pj.metadata, spec: pj.spec });
      return (await api.createNamespacedCustomObject({
        ...G,
        namespace: pj.metadata.namespace!,
        body,
      })) as PatchJob;
    },
    async updateSpec(pj, spec) {
      const body = clean({ ...pj, spec });
      return (await api.replaceNamespacedCustomObject({
        ...G,
        namespace: pj.metadata.namespace!,
        name: pj.metadata.name,
        body,
      })) as PatchJob;
    },
    async updateStatus(pj, status) {
      const body = clean({
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: pj.metadata,
        spec: pj.spec,
        status,
      });
      return (await api.replaceNamespacedCustomObjectStatus({
        ...G,
        namespace: pj.metadata.namespace!,
        name: pj.metadata.name,
        body,
      })) as PatchJob;
    },
    async delete(namespace, name) {
      await ignoreNotFound(api.deleteNamespacedCustomObject({ ...G, namespace, name }));
    },
  };
}
