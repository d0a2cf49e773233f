// copa's OpenVEX document, kept with the PatchJob in a ConfigMap it owns (deleted with it).
// A ConfigMap of that name that this PatchJob does not own is never touched: the name is
// derived from the PatchJob's, which a tenant chooses, so it could name anything.
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import { API_VERSION, KIND, type PatchJob } from "../api/index.ts";
import { isConflict, isNotFound } from "../kube/index.ts";

/** A ConfigMap of the VEX's name exists and is not this PatchJob's: left alone. */
export class VexNameTakenError extends Error {
  override name = "VexNameTakenError";
  readonly code = "VEX_NAME_TAKEN";
}

/** ConfigMaps hold at most 1 MiB; keep well below. */
export const MAX_VEX_BYTES = 512 * 1024;

export function vexConfigMapName(pj: PatchJob): string {
  return `${pj.metadata.name.slice(0, 240)}-vex`;
}

export function vexWriter(kc: KubeConfig) {
  const core = kc.makeApiClient(CoreV1Api);
  return async (pj: PatchJob, vex: string): Promise<string | undefined> => {
    if (Buffer.byteLength(vex) > MAX_VEX_BYTES) return undefined;
    const name = vexConfigMapName(pj);
    const namespace = pj.metadata.namespace!;
    const body: V1ConfigMap = {
      metadata: {
        name,
        namespace,
        labels: {
          "app.kubernetes.io/managed-by": "vuln-patcher",
          "vulnpatcher.io/patchjob": pj.metadata.name.slice(0, 63),
        },
        annotations: { "vulnpatcher.io/generation": String(pj.metadata.generation ?? 1) },
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: KIND,
            name: pj.metadata.name,
            uid: pj.metadata.uid!,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      data: { "vex.json": vex },
    };
    try {
      await core.createNamespacedConfigMap({ namespace, body });
    } catch (err) {
      if (!isConflict(err)) throw err;
      const cur = await core
        .readNamespacedConfigMap({ namespace, name })
        .catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)));
      if (cur && !cur.metadata?.ownerReferences?.some((o) => o.uid === pj.metadata.uid))
        throw new VexNameTakenError(
          `ConfigMap ${namespace}/${name} exists and is not this PatchJob's: the VEX document is not stored`,
        );
      await core.replaceNamespacedConfigMap({
        namespace,
        name,
        body: { ...body, metadata: { ...body.metadata, resourceVersion: cur?.metadata?.resourceVersion } },
      });
    }
    return name;
  };
}
