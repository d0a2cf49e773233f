// Small helpers for tests that create sbomscanner reports and read PatchJobs.
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  GROUP,
  type PatchJob,
  PLURAL,
  REPORT_GROUP,
  REPORT_PLURAL,
  REPORT_VERSION,
  VERSION,
} from "../api/index.ts";

export function reportsApi(kc: KubeConfig) {
  const api = kc.makeApiClient(CustomObjectsApi);
  const g = { group: REPORT_GROUP, version: REPORT_VERSION, plural: REPORT_PLURAL };
  return {
    create: (r: Record<string, any>) =>
      api.createNamespacedCustomObject({ ...g, namespace: r.metadata.namespace ?? "default", body: r }),
    get: (ns: string, name: string) =>
      api.getNamespacedCustomObject({ ...g, namespace: ns, name }) as Promise<Record<string, any>>,
    replace: (r: Record<string, any>) =>
      api.replaceNamespacedCustomObject({
        ...g,
        namespace: r.metadata.namespace,
        name: r.metadata.name,
        body: r,
      }),
    delete: (ns: string, name: string) => api.deleteNamespacedCustomObject({ ...g, namespace: ns, name }),
    /** A JSON patch (small, no read first, no conflicts). */
    jsonPatch: (ns: string, name: string, ops: Array<{ op: string; path: string; value?: unknown }>) =>
      api.patchNamespacedCustomObject({ ...g, namespace: ns, name, body: ops }),
  };
}

export async function listPatchJobs(kc: KubeConfig, namespace = "default"): Promise<PatchJob[]> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const out: PatchJob[] = [];
  let _continue: string | undefined;
  do {
    const page = (await api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      limit: 500,
      _continue,
    })) as { items: PatchJob[]; metadata?: { continue?: string } };
    out.push(...page.items);
    _continue = page.metadata?.continue || undefined;
  } while (_continue);
  return out;
}

export async function createNamespace(kc: KubeConfig, name: string): Promise<void> {
  const { CoreV1Api } = await import("@kubernetes/client-node");
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
}
