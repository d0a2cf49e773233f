// The workloads of a namespace as the rollout decision reads them (src/decide/rollout.ts),
// and the one write a rollout step makes to a workload. Read when a PatchJob's rollout has
// work left (a plan, or a workload changing: then every ROLLOUT_POLL_MS), never watched:
// an idle controller reads no workload.
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1DaemonSet,
  type V1Deployment,
  type V1Pod,
  type V1PodSpec,
  type V1StatefulSet,
} from "@kubernetes/client-node";
import type { WorkloadFacts, WorkloadKind, WorkloadProgress, WorkloadWrite } from "../decide/index.ts";
import { statusCode } from "../kube/index.ts";
import { REPORT_GROUP, SCANNER_GROUP, SCANNER_REGISTRY_PLURAL, SCANNER_VERSION } from "../api/index.ts";
import { normaliseHost } from "../registry/index.ts";

function containers(spec: V1PodSpec | undefined): WorkloadFacts["containers"] {
  return [
    ...(spec?.initContainers ?? []).map((c) => ({ name: c.name, image: c.image ?? "", init: true })),
    ...(spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image ?? "" })),
  ];
}

interface Meta {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

const forbiddenAsUndefined = <T>(p: Promise<T>): Promise<T | undefined> =>
  p.catch((err: unknown) => (statusCode(err) === 403 ? undefined : Promise.reject(err)));

/** Why a Pod is not ready, in the words of its containers, its probes, or its condition. */
export function podWhy(p: V1Pod, unhealthy: Map<string, string>): string | undefined {
  const ready = p.status?.conditions?.find((c) => c.type === "Ready");
  if (ready?.status === "True") return undefined;
  for (const s of [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]) {
    const w = s.state?.waiting;
    if (w?.reason && !["ContainerCreating", "PodInitializing"].includes(w.reason))
      return `${s.name}: ${w.reason}${w.message ? `: ${w.message}` : ""}`;
    const t = s.state?.terminated ?? s.lastState?.terminated;
    if (t && t.exitCode !== 0) return `${s.name}: ${t.reason ?? "terminated"} (exit ${t.exitCode})`;
  }
  const probe = unhealthy.get(p.metadata?.name ?? "");
  if (probe) return probe;
  return ready?.message ?? ready?.reason ?? p.status?.phase ?? "not ready";
}

const matches = (labels: Record<string, string> | undefined, sel: Record<string, string> | undefined) =>
  !!sel && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels?.[k] === v);

function deploymentProgress(d: V1Deployment): WorkloadProgress {
  const s = d.status ?? {};
  const deadline = s.conditions?.find(
    (c) => c.type === "Progressing" && c.status === "False" && c.reason === "ProgressDeadlineExceeded",
  );
  return {
    generation: d.metadata?.generation ?? 0,
    observedGeneration: s.observedGeneration ?? 0,
    desired: d.spec?.replicas ?? 1,
    updated: s.updatedReplicas ?? 0,
    ready: s.readyReplicas ?? 0,
    available: s.availableReplicas ?? 0,
    total: s.replicas ?? 0,
    ...(deadline
      ? {
          deadlineExceeded: deadline.message ?? "progress deadline exceeded",
          ...(deadline.lastUpdateTime
            ? { deadlineExceededAt: new Date(deadline.lastUpdateTime).toISOString() }
            : {}),
        }
      : {}),
  };
}

function statefulSetProgress(d: V1StatefulSet): WorkloadProgress {
  const s = d.status ?? { replicas: 0 };
  // Pods of an old revision are not "updated": updated == total once the revisions agree.
  const done = s.currentRevision === s.updateRevision;
  return {
    generation: d.metadata?.generation ?? 0,
    observedGeneration: s.observedGeneration ?? 0,
    desired: d.spec?.replicas ?? 1,
    updated: s.updatedReplicas ?? 0,
    ready: s.readyReplicas ?? 0,
    available: s.availableReplicas ?? 0,
    total: done ? (s.updatedReplicas ?? 0) : s.replicas + 1,
  };
}

function daemonSetProgress(d: V1DaemonSet): WorkloadProgress {
  const s = d.status;
  return {
    generation: d.metadata?.generation ?? 0,
    observedGeneration: s?.observedGeneration ?? 0,
    desired: s?.desiredNumberScheduled ?? 0,
    updated: s?.updatedNumberScheduled ?? 0,
    ready: s?.numberReady ?? 0,
    available: s?.numberAvailable ?? 0,
    total: s?.currentNumberScheduled ?? 0,
  };
}

interface ScanReportObject {
  metadata?: { ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean }> };
  spec?: {
    containers?: Array<{
      name?: string;
      imageRef?: { registry?: string; repository?: string; tag?: string };
    }>;
  };
}

/**
 * sbomscanner's WorkloadScanReports of a namespace, by owning workload ("Kind/name"): what
 * each container runs, its Registry object's name turned into a host. None where
 * sbomscanner does not serve the kind or the controller may not read it.
 */
async function scannedContainers(
  api: CustomObjectsApi,
  namespace: string,
): Promise<Map<string, NonNullable<WorkloadFacts["scanned"]>>> {
  const out = new Map<string, NonNullable<WorkloadFacts["scanned"]>>();
  const list = (await api
    .listNamespacedCustomObject({
      group: REPORT_GROUP,
      version: "v1alpha1",
      namespace,
      plural: "workloadscanreports",
    })
    .catch(() => undefined)) as { items: ScanReportObject[] } | undefined;
  if (!list?.items.length) return out;
  const registries = (await api
    .listNamespacedCustomObject({
      group: SCANNER_GROUP,
      version: SCANNER_VERSION,
      namespace,
      plural: SCANNER_REGISTRY_PLURAL,
    })
    .catch(() => ({ items: [] }))) as {
    items: Array<{ metadata: { name: string }; spec?: { uri?: string } }>;
  };
  const hosts = new Map(
    registries.items.filter((r) => r.spec?.uri).map((r) => [r.metadata.name, normaliseHost(r.spec!.uri!)]),
  );
  for (const r of list.items) {
    const owner = r.metadata?.ownerReferences?.find((o) => o.controller) ?? r.metadata?.ownerReferences?.[0];
    if (!owner?.kind || !owner.name) continue;
    const containers: NonNullable<WorkloadFacts["scanned"]> = {};
    for (const c of r.spec?.containers ?? []) {
      const i = c.imageRef;
      if (!c.name || !i?.repository || !i.tag) continue;
      const host = i.registry ? hosts.get(i.registry) : undefined;
      containers[c.name] = { ...(host ? { registry: host } : {}), repository: i.repository, tag: i.tag };
    }
    out.set(`${owner.kind}/${owner.name}`, containers);
  }
  return out;
}

export function workloadReader(kc: KubeConfig) {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  /** The last readiness-probe failure per Pod (Events of reason Unhealthy); none without the rights. */
  const unhealthy = async (namespace: string): Promise<Map<string, string>> => {
    const list = await forbiddenAsUndefined(
      core.listNamespacedEvent({ namespace, fieldSelector: "reason=Unhealthy,involvedObject.kind=Pod" }),
    );
    const byPod = new Map<string, { at: number; message: string }>();
    for (const e of list?.items ?? []) {
      const at = new Date(e.lastTimestamp ?? e.eventTime ?? 0).getTime();
      const pod = e.involvedObject.name ?? "";
      if ((byPod.get(pod)?.at ?? -1) <= at) byPod.set(pod, { at, message: (e.message ?? "").trim() });
    }
    return new Map([...byPod].map(([k, v]) => [k, v.message]));
  };
  return async (namespace: string, o: { progress?: boolean } = {}): Promise<WorkloadFacts[] | undefined> => {
    // Without the chart's rollout.enabled the controller may not read workloads: no plan.
    const all = await forbiddenAsUndefined(
      Promise.all([
        apps.listNamespacedDeployment({ namespace }),
        apps.listNamespacedStatefulSet({ namespace }),
        apps.listNamespacedDaemonSet({ namespace }),
        batch.listNamespacedCronJob({ namespace }),
        core.listNamespacedPod({ namespace }),
      ]),
    );
    if (!all) return undefined;
    const [deps, sets, daemons, crons, pods] = all;
    const probes = o.progress ? await unhealthy(namespace) : new Map<string, string>();
    // Which containers run the image matters for the plan only: a progress poll (every
    // ROLLOUT_POLL_MS while a workload changes) does not read sbomscanner's map again.
    const scanned = o.progress ? new Map() : await scannedContainers(custom, namespace);
    const of = (
      kind: WorkloadKind,
      obj: Meta,
      spec: V1PodSpec | undefined,
      progress?: WorkloadProgress,
      selector?: Record<string, string>,
    ): WorkloadFacts => {
      const unready = o.progress
        ? pods.items
            .filter((p) => matches(p.metadata?.labels, selector) && !p.metadata?.deletionTimestamp)
            .flatMap((p) => {
              const why = podWhy(p, probes);
              return why
                ? [{ pod: p.metadata!.name!, images: containers(p.spec).map((c) => c.image), why }]
                : [];
            })
        : [];
      return {
        kind,
        namespace,
        name: obj.metadata?.name ?? "",
        ...(obj.metadata?.labels ? { labels: obj.metadata.labels } : {}),
        ...(obj.metadata?.annotations ? { annotations: obj.metadata.annotations } : {}),
        containers: containers(spec),
        ...(scanned.has(`${kind}/${obj.metadata?.name}`)
          ? { scanned: scanned.get(`${kind}/${obj.metadata?.name}`) }
          : {}),
        ...(o.progress && progress ? { progress } : {}),
        ...(unready.length ? { unready } : {}),
      };
    };
    return [
      ...deps.items.map((d) =>
        of("Deployment", d, d.spec?.template.spec, deploymentProgress(d), d.spec?.selector.matchLabels),
      ),
      ...sets.items.map((d) =>
        of("StatefulSet", d, d.spec?.template.spec, statefulSetProgress(d), d.spec?.selector.matchLabels),
      ),
      ...daemons.items.map((d) =>
        of("DaemonSet", d, d.spec?.template.spec, daemonSetProgress(d), d.spec?.selector.matchLabels),
      ),
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

export class WorkloadWriteError extends Error {
  override name = "WorkloadWriteError";
  readonly code = "WORKLOAD_FORBIDDEN";
}

/** A JSON Pointer segment (RFC 6901). */
const esc = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");

/**
 * One rollout step's write: a JSON Patch whose `test` operations hold each container at the
 * image the decision expects, so a workload changed since it was read is not overwritten
 * (the patch fails; the next pass reads it again). false: it changed under us.
 */
export function workloadWriter(kc: KubeConfig) {
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const jsonPatch = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);
  const read = (w: WorkloadWrite) => {
    const args = { namespace: w.namespace, name: w.name };
    switch (w.kind) {
      case "Deployment":
        return apps
          .readNamespacedDeployment(args)
          .then((d) => ({ meta: d.metadata, spec: d.spec?.template.spec }));
      case "StatefulSet":
        return apps
          .readNamespacedStatefulSet(args)
          .then((d) => ({ meta: d.metadata, spec: d.spec?.template.spec }));
      case "DaemonSet":
        return apps
          .readNamespacedDaemonSet(args)
          .then((d) => ({ meta: d.metadata, spec: d.spec?.template.spec }));
      case "CronJob":
        return batch
          .readNamespacedCronJob(args)
          .then((d) => ({ meta: d.metadata, spec: d.spec?.jobTemplate.spec?.template.spec }));
    }
  };
  const send = (w: WorkloadWrite, body: object[]) => {
    const args = { namespace: w.namespace, name: w.name, body };
    switch (w.kind) {
      case "Deployment":
        return apps.patchNamespacedDeployment(args, jsonPatch);
      case "StatefulSet":
        return apps.patchNamespacedStatefulSet(args, jsonPatch);
      case "DaemonSet":
        return apps.patchNamespacedDaemonSet(args, jsonPatch);
      case "CronJob":
        return batch.patchNamespacedCronJob(args, jsonPatch);
    }
  };
  return async (w: WorkloadWrite): Promise<boolean> => {
    const now = await read(w);
    const base = w.kind === "CronJob" ? "/spec/jobTemplate/spec/template/spec" : "/spec/template/spec";
    const ops: object[] = [];
    for (const c of w.containers) {
      const list = c.init ? "initContainers" : "containers";
      const i =
        (c.init ? now.spec?.initContainers : now.spec?.containers)?.findIndex((x) => x.name === c.name) ?? -1;
      if (i < 0) return false;
      const path = `${base}/${list}/${i}`;
      ops.push({ op: "test", path: `${path}/name`, value: c.name });
      ops.push({ op: "test", path: `${path}/image`, value: c.expect });
      ops.push({ op: "replace", path: `${path}/image`, value: c.image });
    }
    if (!now.meta?.annotations) ops.push({ op: "add", path: "/metadata/annotations", value: {} });
    for (const [k, v] of Object.entries(w.annotations)) {
      const path = `/metadata/annotations/${esc(k)}`;
      if (v !== null) ops.push({ op: "add", path, value: v });
      else if (now.meta?.annotations?.[k] !== undefined) ops.push({ op: "remove", path });
    }
    try {
      await send(w, ops);
      return true;
    } catch (err) {
      // 422: a test operation failed (someone changed the image); 409: a conflict.
      if (statusCode(err) === 422 || statusCode(err) === 409) return false;
      if (statusCode(err) === 403)
        throw new WorkloadWriteError(
          `may not change ${w.kind} ${w.namespace}/${w.name}: the chart's rollout.namespaces does not name ${w.namespace}`,
        );
      throw err;
    }
  };
}

/** The API version of a workload kind, for its Events. */
export const workloadApiVersion = (kind: WorkloadWrite["kind"]) =>
  kind === "CronJob" ? "batch/v1" : "apps/v1";
