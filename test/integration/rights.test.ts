// Least rights, proven with the chart's own ServiceAccount tokens on the real apiserver:
// the RBAC objects the chart renders are applied, and the worker is asked to do what a
// stolen worker token would try. Each refusal is a FAULT line.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from "@kubernetes/client-node";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { loadKubeConfig, statusCode } from "../../src/kube/index.ts";
import { applyDocs, renderChart, serviceAccountKubeconfig } from "../support/chart.ts";
import { reportFault } from "../support/faults.ts";
import { namespaces, testEnv } from "../support/shared.ts";

let env: Env;
let admin: KubeConfig;
let worker: KubeConfig;
let controller: KubeConfig;
/** The release's namespace, a tenant namespace it serves, another it does not, and the Job namespace. */
let RELEASE: string, TENANT: string, OTHER: string, JOBS: string;

before(async () => {
  env = await testEnv({ nats: false });
  admin = env.kubeConfig();
  const ns = await namespaces(env, "rights", "tenant", "other");
  [RELEASE, TENANT, OTHER] = [ns.rights!, ns.tenant!, ns.other!];
  JOBS = `${RELEASE}-copa`;
  // The chart's own RBAC (release "rights": its cluster-scoped names are this file's),
  // serving one tenant namespace, with its Job namespace.
  // Rollout on, allowed to change workloads in the tenant namespace only.
  const docs = await renderChart("rights", RELEASE, [
    "--set",
    `controller.namespaces={${TENANT}}`,
    "--set",
    "rollout.enabled=true",
    "--set",
    `rollout.namespaces={${TENANT}}`,
  ]);
  await applyDocs(
    env,
    docs.filter((d) =>
      ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(
        d.kind,
      ),
    ),
  );
  // Pods need the namespace's default ServiceAccount, which kube-controller-manager makes.
  await waitFor(
    `the default ServiceAccount in ${JOBS}`,
    async () =>
      (await admin.makeApiClient(CoreV1Api).listNamespacedServiceAccount({ namespace: JOBS })).items.some(
        (sa) => sa.metadata?.name === "default",
      ) || undefined,
    30_000,
    100,
  );
  worker = loadKubeConfig(await serviceAccountKubeconfig(env, RELEASE, "rights-vuln-patcher-worker"));
  controller = loadKubeConfig(await serviceAccountKubeconfig(env, RELEASE, "rights-vuln-patcher-controller"));
});

async function code(p: Promise<unknown>): Promise<number> {
  return p.then(
    () => 200,
    (e: unknown) => statusCode(e) ?? 0,
  );
}

const privilegedPod = (name: string): V1Pod => ({
  metadata: { name },
  spec: {
    restartPolicy: "Never",
    containers: [{ name: "c", image: "busybox", securityContext: { privileged: true } }],
  },
});

test("rights - the worker's token: no ConfigMaps or Secrets outside its own namespaces; Secrets in the Job namespace only created, never read", async (t) => {
  const core = worker.makeApiClient(CoreV1Api);
  const results = {
    "create a ConfigMap in a namespace it does not serve": await code(
      core.createNamespacedConfigMap({
        namespace: OTHER,
        body: { metadata: { name: "x" }, data: { a: "b" } },
      }),
    ),
    "read a Secret in a namespace it does not serve": await code(
      core.readNamespacedSecret({ namespace: OTHER, name: "x" }),
    ),
    "list Secrets cluster-wide": await code(core.listSecretForAllNamespaces()),
    "list ConfigMaps cluster-wide": await code(core.listConfigMapForAllNamespaces()),
    "list Secrets in the Job namespace": await code(core.listNamespacedSecret({ namespace: JOBS })),
    "read Secrets in the release namespace": await code(core.listNamespacedSecret({ namespace: RELEASE })),
  };
  for (const [what, c] of Object.entries(results)) assert.equal(c, 403, `${what}: ${c}`);
  // Where it should have rights, it has them (the refusals above are not a broken token).
  assert.equal(await code(core.readNamespacedSecret({ namespace: TENANT, name: "absent" })), 404);
  assert.equal(
    await code(
      core.createNamespacedSecret({
        namespace: JOBS,
        body: { metadata: { name: "a-run" }, stringData: { a: "b" } },
      }),
    ),
    200,
  );
  reportFault(t, {
    fault: "stolen-worker-token-configmaps-secrets",
    injected:
      "the chart's worker ServiceAccount token asks for ConfigMaps and Secrets outside its namespaces",
    expected:
      "403 for each; Secrets of a tenant namespace readable, Secrets of the Job namespace only creatable",
    observed: Object.entries(results)
      .map(([w, c]) => `${w}: ${c}`)
      .join("; "),
  });
});

test("rights - the worker's token cannot start a privileged Pod in its Job namespace: RBAC refuses the Pod, Pod Security Admission the Job's", async (t) => {
  const direct = await code(
    worker.makeApiClient(CoreV1Api).createNamespacedPod({ namespace: JOBS, body: privilegedPod("direct") }),
  );
  assert.equal(direct, 403, "no Pod rights");
  // Even an administrator's privileged Pod is refused there: the namespace enforces "restricted".
  let admission = "";
  await admin
    .makeApiClient(CoreV1Api)
    .createNamespacedPod({ namespace: JOBS, body: privilegedPod("as-admin") })
    .then(
      () => assert.fail("a privileged Pod was admitted into the Job namespace"),
      (e: unknown) => {
        const body = String((e as { body?: unknown }).body ?? e);
        admission = (JSON.parse(body) as { message: string }).message;
        assert.equal(statusCode(e), 403);
      },
    );
  assert.match(admission, /violates PodSecurity "restricted/);
  // The worker may create Jobs there; a privileged one never gets its Pod.
  const job = await worker.makeApiClient(BatchV1Api).createNamespacedJob({
    namespace: JOBS,
    body: {
      metadata: { name: "privileged" },
      spec: { backoffLimit: 0, template: privilegedPod("privileged") as never },
    },
  });
  const refusal = await waitFor(
    "the Job controller's FailedCreate event",
    async () =>
      (
        await admin.makeApiClient(CoreV1Api).listNamespacedEvent({
          namespace: JOBS,
          fieldSelector: `involvedObject.name=${job.metadata!.name},reason=FailedCreate`,
        })
      ).items[0]?.message,
    60_000,
    250,
  );
  assert.match(refusal, /violates PodSecurity "restricted/);
  const pods = await admin.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: JOBS });
  assert.equal(pods.items.length, 0, "no Pod exists in the Job namespace");
  reportFault(t, {
    fault: "stolen-worker-token-privileged-pod",
    injected:
      "the worker token creates a privileged Pod, and a Job with a privileged Pod template, in the Job namespace",
    expected:
      "the Pod refused (RBAC 403); the Job's Pod refused by Pod Security Admission (restricted); no Pod runs",
    observed: `Pod: ${direct}; Job's Pod: ${refusal.slice(0, 140)}; Pods in ${JOBS}: ${pods.items.length}`,
  });
});

test("rights - the worker's token writes no ConfigMap, not even in its tenant namespaces (the VEX is a signed attestation on the image)", async () => {
  const core = worker.makeApiClient(CoreV1Api);
  for (const namespace of [TENANT, OTHER])
    assert.equal(
      await code(core.createNamespacedConfigMap({ namespace, body: { metadata: { name: "coredns-vex" } } })),
      403,
      namespace,
    );
  assert.equal(
    await code(core.readNamespacedConfigMap({ namespace: TENANT, name: "kube-root-ca.crt" })),
    403,
  );
});

test("rights - the controller's token reads no Secret and writes no ConfigMap anywhere", async () => {
  const core = controller.makeApiClient(CoreV1Api);
  assert.equal(await code(core.listSecretForAllNamespaces()), 403);
  assert.equal(await code(core.readNamespacedSecret({ namespace: TENANT, name: "x" })), 403);
  assert.equal(
    await code(core.createNamespacedConfigMap({ namespace: TENANT, body: { metadata: { name: "x" } } })),
    403,
  );
});

test("rights - rollout: the controller's token patches workloads only in the namespaces rollout.namespaces names; never creates or deletes one", async (t) => {
  const apps = controller.makeApiClient(AppsV1Api);
  const batch = controller.makeApiClient(BatchV1Api);
  const admApps = admin.makeApiClient(AppsV1Api);
  const body = (name: string) => ({
    metadata: { name },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: "app", image: "busybox:1" }] },
      },
    },
  });
  for (const namespace of [TENANT, OTHER])
    await admApps.createNamespacedDeployment({ namespace, body: body("web") });
  const json = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);
  const setImage = (namespace: string) =>
    apps.patchNamespacedDeployment(
      {
        namespace,
        name: "web",
        body: [{ op: "replace", path: "/spec/template/spec/containers/0/image", value: "busybox:2" }],
      },
      json,
    );
  const results = {
    "patch a Deployment in the tenant namespace": await code(setImage(TENANT)),
    "patch a Deployment in another namespace": await code(setImage(OTHER)),
    "patch a CronJob in another namespace": await code(
      batch.patchNamespacedCronJob({ namespace: OTHER, name: "x", body: [] }, json),
    ),
    "create a Deployment in the tenant namespace": await code(
      apps.createNamespacedDeployment({ namespace: TENANT, body: body("new") }),
    ),
    "delete a Deployment in the tenant namespace": await code(
      apps.deleteNamespacedDeployment({ namespace: TENANT, name: "web" }),
    ),
    "list Deployments (the plan)": await code(apps.listNamespacedDeployment({ namespace: OTHER })),
    "list sbomscanner's WorkloadScanReports (the plan)": await code(
      controller.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
        group: "storage.sbomscanner.kubewarden.io",
        version: "v1alpha1",
        namespace: OTHER,
        plural: "workloadscanreports",
      }),
    ),
  };
  assert.deepEqual(results, {
    "patch a Deployment in the tenant namespace": 200,
    "patch a Deployment in another namespace": 403,
    "patch a CronJob in another namespace": 403,
    "create a Deployment in the tenant namespace": 403,
    "delete a Deployment in the tenant namespace": 403,
    "list Deployments (the plan)": 200,
    "list sbomscanner's WorkloadScanReports (the plan)": 200,
  });
  reportFault(t, {
    fault: "rollout-outside-named-namespaces",
    injected:
      "the chart's controller token (rollout.namespaces = the tenant) changes workloads elsewhere, creates and deletes",
    expected: "a patch allowed only in the named namespace; 403 elsewhere and for create/delete",
    observed: Object.entries(results)
      .map(([w, c]) => `${w}: ${c}`)
      .join("; "),
  });
});
