// Install CRDs (create, or replace keeping the resourceVersion) and wait until the
// API server serves them, as envtest's InstallCRDs does.
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { isConflict, isNotFound } from "./errors.ts";
import type { CRDObject } from "../api/index.ts";

export async function installCRDs(kc: KubeConfig, crds: CRDObject[], timeoutMs = 30_000): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (const crd of crds) {
    // client-node serialises through its typed models (enum -> _enum and so on): convert
    // the plain YAML object into one first, or those fields would be dropped.
    const body = loadYaml<V1CustomResourceDefinition>(JSON.stringify(crd));
    for (let attempt = 0; ; attempt++) {
      try {
        const cur = await api.readCustomResourceDefinition({ name: crd.metadata.name });
        await api.replaceCustomResourceDefinition({
          name: crd.metadata.name,
          body: { ...body, metadata: { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion } },
        });
        break;
      } catch (err) {
        if (isNotFound(err)) {
          try {
            await api.createCustomResourceDefinition({ body });
            break;
          } catch (e) {
            if (!isConflict(e) || attempt > 3) throw e;
          }
        } else if (!isConflict(err) || attempt > 3) throw err;
      }
    }
  }
  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    for (;;) {
      const cur = await api.readCustomResourceDefinition({ name: crd.metadata.name });
      if (cur.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
      if (Date.now() > deadline)
        throw new Error(`CRD ${crd.metadata.name} not established after ${timeoutMs} ms`);
      await sleep(100);
    }
  }
  // Established is not yet served: a list right after it can still be a 404 for a moment,
  // which an informer would answer with its backoff. Wait until each kind lists.
  const objects = kc.makeApiClient(CustomObjectsApi);
  for (const crd of crds) {
    const { group, names, versions } = crd.spec;
    for (;;) {
      try {
        await objects.listClusterCustomObject({
          group,
          version: versions[0]!.name,
          plural: names.plural,
          limit: 1,
        });
        break;
      } catch (err) {
        if (!isNotFound(err) || Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
  }
}
