// PatchJobs for worker tests: what a user would `kubectl create`.
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  GROUP,
  parseImageRef,
  type PatchJob,
  type PatchJobSpec,
  PLURAL,
  VERSION,
} from "../../src/api/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";

export function manualSpec(
  image: string,
  digest: string | undefined,
  extra: Partial<PatchJobSpec> = {},
): PatchJobSpec {
  const r = parseImageRef(image);
  return {
    image: {
      registryURI: r.registry,
      repository: r.repository,
      ...(r.tag ? { tag: r.tag } : {}),
      ...(digest ? { digest } : {}),
      platform: "linux/amd64",
    },
    source: "manual",
    ...extra,
  };
}

export async function createPatchJob(
  kc: KubeConfig,
  namespace: string,
  name: string,
  spec: PatchJobSpec,
): Promise<PatchJob> {
  const api = kc.makeApiClient(CustomObjectsApi);
  return (await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    namespace,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: "PatchJob", metadata: { name, namespace }, spec },
  })) as PatchJob;
}

export async function getPatchJob(kc: KubeConfig, namespace: string, name: string): Promise<PatchJob> {
  return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    namespace,
    name,
  })) as PatchJob;
}

export async function waitForPhase(
  kc: KubeConfig,
  namespace: string,
  name: string,
  phases: string[],
  timeoutMs = 300_000,
): Promise<PatchJob> {
  return waitFor(
    `PatchJob ${namespace}/${name} in ${phases.join("|")}`,
    async () => {
      const pj = await getPatchJob(kc, namespace, name);
      return pj.status?.phase &&
        phases.includes(pj.status.phase) &&
        pj.status.observedGeneration === pj.metadata.generation
        ? pj
        : undefined;
    },
    timeoutMs,
    500,
  );
}

/**
 * The PatchJob once its status lists `count` library findings: the worker lists its own
 * updates' outcomes, and the controller adds the report's others when the worker's claim
 * came before its queued status (src/decide/decide-report.ts, librariesBackfill).
 */
export async function waitForLibraries(
  kc: KubeConfig,
  namespace: string,
  name: string,
  count: number,
  timeoutMs = 60_000,
): Promise<PatchJob> {
  return waitFor(
    `PatchJob ${namespace}/${name} listing ${count} library findings`,
    async () => {
      const pj = await getPatchJob(kc, namespace, name);
      return (pj.status?.libraries?.length ?? 0) >= count ? pj : undefined;
    },
    timeoutMs,
    500,
  );
}
