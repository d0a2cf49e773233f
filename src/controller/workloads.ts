// The workloads of a namespace as the rollout decision reads them (src/decide/workloads.ts):
// read when a policy's rollout needs a plan, once per PatchJob generation, not watched.
import { AppsV1Api, BatchV1Api, CoreV1Api, type KubeConfig, type V1PodSpec } from "@kubernetes/client-node";
import type { WorkloadFacts, WorkloadKind } from "../decide/index.ts";
import { statusCode } from "../kube/index.ts";

function containers(spec: V1PodSpec | undefined): WorkloadFacts["containers"] {
  return [
    ...(spec?.initContainers ?? []).map((c) => ({ name: c.name, image: c.image ?? "", init: true })),
    ...(spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image ?? "" })),
  ];
}

export function workloadReader(kc: KubeConfig) {
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  return async (namespace: string): Promise<WorkloadFacts[] | undefined> => {
    // Without the chart's rollout.enabled the controller may not read workloads: no plan.
    const all = await Promise.all([
      apps.listNamespacedDeployment({ namespace }),
      apps.listNamespacedStatefulSet({ namespace }),
      apps.listNamespacedDaemonSet({ namespace }),
      batch.listNamespacedCronJob({ namespace }),
      core.listNamespacedPod({ namespace }),
    ]).catch((err: unknown) => (statusCode(err) === 403 ? undefined : Promise.reject(err)));
    if (!all) return undefined;
    const [deps, sets, daemons, crons, pods] = all;
    const of = (
      kind: WorkloadKind,
      o: {
        metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
      },
      spec: V1PodSpec | undefined,
    ): WorkloadFacts => ({
      kind,
      namespace,
      name: o.metadata?.name ?? "",
      ...(o.metadata?.labels ? { labels: o.metadata.labels } : {}),
      ...(o.metadata?.annotations ? { annotations: o.metadata.annotations } : {}),
      containers: containers(spec),
    });
    return [
      ...deps.items.map((d) => of("Deployment", d, d.spec?.template.spec)),
      ...sets.items.map((d) => of("StatefulSet", d, d.spec?.template.spec)),
      ...daemons.items.map((d) => of("DaemonSet", d, d.spec?.template.spec)),
      ...crons.items.map((c) => of("CronJob", c, c.spec?.jobTemplate.spec?.template.spec)),
      ...pods.items.map((p) => ({
        ...of("Pod", p, p.spec),
        owned: (p.metadata?.ownerReferences ?? []).length > 0,
        imageIDs: Object.fromEntries(
          [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].map((s) => [
            s.name,
            [s.imageID],
          ]),
        ),
      })),
    ];
  };
}
