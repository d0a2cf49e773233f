// Asking sbomscanner for a scan of a patched image: the Registry of the PatchJob's
// namespace whose host is the patched image's (the repository named when the Registry
// lists it), and a ScanJob for it. Read and created only when a policy asks for it,
// once per patch (the ScanJob's name is the patch's).
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  parseImageRef,
  type PatchJob,
  SCANJOB_PLURAL,
  type ScanJob,
  SCANNER_GROUP,
  SCANNER_REGISTRY_PLURAL,
  SCANNER_VERSION,
} from "../api/index.ts";
import type { ScanRequest } from "../decide/index.ts";
import { isConflict } from "../kube/index.ts";
import { normaliseHost } from "../registry/index.ts";

interface RegistryObject {
  metadata: { name: string };
  spec?: { uri?: string; repositories?: Array<{ name?: string }> };
}

export function scanJobs(kc: KubeConfig) {
  const api = kc.makeApiClient(CustomObjectsApi);
  const G = { group: SCANNER_GROUP, version: SCANNER_VERSION };
  return {
    async registryFor(pj: PatchJob): Promise<ScanRequest | undefined> {
      const ref = pj.status?.patchedImage?.reference;
      if (!ref) return undefined;
      const image = parseImageRef(ref.split("@")[0]!);
      const list = (await api.listNamespacedCustomObject({
        ...G,
        namespace: pj.metadata.namespace!,
        plural: SCANNER_REGISTRY_PLURAL,
      })) as { items: RegistryObject[] };
      const host = normaliseHost(image.registry);
      const reg = list.items
        .filter((r) => r.spec?.uri && normaliseHost(r.spec.uri) === host)
        .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))[0];
      if (!reg) return undefined;
      const listed = reg.spec?.repositories?.some((r) => r.name === image.repository);
      return { registry: reg.metadata.name, ...(listed ? { repository: image.repository } : {}) };
    },
    /** True when made now; false when it already existed (an earlier pass made it). */
    async create(job: ScanJob): Promise<boolean> {
      try {
        await api.createNamespacedCustomObject({
          ...G,
          namespace: job.metadata.namespace,
          plural: SCANJOB_PLURAL,
          body: job,
        });
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    },
  };
}
