// The Helm chart: lint and render with several value sets, apply the rendered manifests
// with a server-side dry run to the real apiserver, and check that the chart's
// ServiceAccounts (real tokens) are denied what their rules do not grant. The chart
// installed for real, with a patch through its Pods, is test/cluster/cluster.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { BatchV1Api, CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { defaultPolicy } from "../../src/api/index.ts";
import { loadKubeConfig, statusCode } from "../../src/kube/index.ts";
import { REPO_ROOT } from "../../src/devenv/index.ts";
import { testEnv } from "../support/shared.ts";
import { createNamespace } from "../../src/devenv/kube.ts";
import {
  CHART,
  type Doc,
  helm,
  kubectl as kubectlAs,
  renderChart,
  serviceAccountKubeconfig,
} from "../support/chart.ts";

const VALUES = join(REPO_ROOT, "test", "fixtures", "chart-values");
const NS = "vuln-patcher";
const SETS: Record<string, string[]> = {
  default: [],
  "air-gapped": ["-f", join(VALUES, "air-gapped.yaml")],
  "tls-off": ["-f", join(VALUES, "tls-off.yaml")],
  "multi-replica": ["-f", join(VALUES, "multi-replica.yaml")],
  "multi-arch": ["-f", join(VALUES, "multi-arch.yaml")],
};

const render = (set: string) => renderChart("vp", NS, SETS[set]!);

const find = (docs: Doc[], kind: string, suffix: string) =>
  docs.find((d) => d.kind === kind && d.metadata.name.endsWith(suffix));

for (const set of Object.keys(SETS)) {
  test(`chart - helm lint passes with the ${set} values`, async () => {
    const out = await helm(["lint", CHART, "--strict", ...SETS[set]!]);
    assert.match(out, /0 chart\(s\) failed/);
  });
}

test("chart - values.schema.json rejects nonsense", async () => {
  for (const bad of [
    ["--set", "worker.executor=docker"],
    ["--set", "controller.patchTimeout=soon"],
    ["--set", "unknownKey=1"],
  ]) {
    await assert.rejects(helm(["template", "vp", CHART, ...bad]), /schema|values don't meet/i, bad.join(" "));
  }
});

test("chart - what each value set renders", async () => {
  const def = await render("default");
  assert.ok(find(def, "CustomResourceDefinition", "patchjobs.vulnpatcher.io"));
  assert.ok(find(def, "CustomResourceDefinition", "patchpolicies.vulnpatcher.io"));
  const policy = find(def, "PatchPolicy", "default")!;
  assert.equal(policy.metadata.namespace, NS);
  assert.deepEqual(
    policy.spec,
    defaultPolicy(NS).spec,
    "the chart's default policy is the one the code documents",
  );
  assert.equal(find(def, "Deployment", "-controller")?.spec.replicas, 2);
  const worker = find(def, "Deployment", "-worker")!;
  const args: string[] = worker.spec.template.spec.containers[0].args;
  assert.ok(args.includes("--executor=kubernetes"));
  assert.ok(
    args.includes(
      `--buildkit-addr=tcp://vp-vuln-patcher-buildkit-0.vp-vuln-patcher-buildkit-headless.${NS}.svc:1234`,
    ),
    "one BuildKit replica, by name",
  );
  // The worker's own client certificate, copied into each copa Job's Secret.
  assert.ok(args.includes("--buildkit-ca=/certs/ca.crt"));
  assert.ok(args.includes(`--job-namespace=${NS}-copa`));
  const jobsNs = find(def, "Namespace", `${NS}-copa`)!;
  assert.equal(
    jobsNs.metadata.labels?.["pod-security.kubernetes.io/enforce"],
    "restricted",
    "copa Jobs run where Pod Security Admission enforces restricted",
  );
  // No cluster-wide ConfigMap or Secret rights, for any component.
  for (const cr of def.filter((d) => d.kind === "ClusterRole"))
    for (const r of cr.rules as Array<{ resources: string[] }>)
      assert.ok(
        !r.resources.some((x) => x === "configmaps" || x === "secrets"),
        `${cr.metadata.name}: ${JSON.stringify(r)}`,
      );
  assert.ok(
    find(def, "Secret", "-buildkit-server") && find(def, "Secret", "-buildkit-client"),
    "generated mTLS certificates",
  );
  assert.ok(find(def, "StatefulSet", "-nats"), "our own NATS when no URL is given");
  const bk = find(def, "StatefulSet", "-buildkit")!.spec.template.spec.containers[0];
  assert.equal(bk.securityContext.privileged, true);
  assert.ok(bk.args.includes("--tlscacert=/certs/ca.crt"));
  for (const d of ["-controller", "-worker"]) {
    const c = find(def, "Deployment", d)!.spec.template.spec;
    assert.equal(c.securityContext.runAsNonRoot, true);
    assert.equal(c.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.ok(c.containers[0].livenessProbe && c.containers[0].readinessProbe);
  }

  const air = await render("air-gapped");
  const toml: string = find(air, "ConfigMap", "-buildkit")!.data["buildkitd.toml"];
  assert.match(toml, /\[registry\."docker\.io"\]\s+mirrors = \["registry\.internal:5000"\]/);
  assert.match(toml, /\[registry\."ghcr\.io"\]\s+mirrors = \["registry\.internal:5000"\]/);
  assert.match(toml, /\[registry\."registry\.internal:5000"\]\s+http = true/);
  // The workers' own credentials: mounted for the worker (lent only where a TenantGrant says).
  const airWorker = find(air, "Deployment", "-worker")!.spec.template.spec;
  assert.equal(
    airWorker.volumes.find((v: { name: string }) => v.name === "docker-config")?.secret.secretName,
    "internal-registry-auth",
  );
  assert.ok(!airWorker.containers[0].args.some((a: string) => a.startsWith("--registry-secret")));

  const off = await render("tls-off");
  assert.equal(find(off, "Secret", "-buildkit-server"), undefined);
  assert.ok(
    !find(off, "StatefulSet", "-buildkit")!.spec.template.spec.containers[0].args.some((a: string) =>
      a.startsWith("--tls"),
    ),
  );
  assert.ok(
    !find(off, "Deployment", "-worker")!.spec.template.spec.containers[0].args.some((a: string) =>
      a.startsWith("--buildkit-tls"),
    ),
  );

  assert.equal(
    find(def, "StatefulSet", "-buildkit")!.spec.template.spec.initContainers,
    undefined,
    "no binfmt registration by default",
  );
  assert.ok(
    !find(def, "Deployment", "-controller")!.spec.template.spec.containers[0].args.includes(
      "--publish-partial",
    ),
  );
  const arch = await render("multi-arch");
  const init = find(arch, "StatefulSet", "-buildkit")!.spec.template.spec.initContainers;
  assert.equal(init?.length, 1);
  assert.deepEqual(init[0].args, ["--install", "arm64,arm/v7"]);
  assert.equal(init[0].securityContext.privileged, true);
  assert.ok(
    find(arch, "Deployment", "-controller")!.spec.template.spec.containers[0].args.includes(
      "--publish-partial",
    ),
  );

  assert.equal(find(def, "Service", "-api"), undefined, "no API by default (it needs TLS in front)");
  assert.ok(!find(def, "Deployment", "-controller")!.spec.template.spec.containers[0].args.includes("--api"));
  const multi = await render("multi-replica");
  assert.ok(find(multi, "Service", "-api"), "the API's Service");
  assert.ok(
    find(multi, "Deployment", "-controller")!.spec.template.spec.containers[0].args.includes("--api"),
  );
  const role = find(multi, "ClusterRole", "-controller")!;
  assert.ok(
    role.rules.some((r: any) => r.resources.includes("tokenreviews") && r.verbs.join() === "create") &&
      role.rules.some(
        (r: any) => r.resources.includes("subjectaccessreviews") && r.verbs.join() === "create",
      ),
    "the API checks callers with TokenReview and SubjectAccessReview",
  );
  assert.ok(
    !find(def, "ClusterRole", "-controller")!.rules.some((r: any) => r.resources.includes("tokenreviews")),
    "and only when it is on",
  );
  assert.equal(find(multi, "Deployment", "-controller")?.spec.replicas, 3);
  assert.equal(find(multi, "Deployment", "-worker")?.spec.replicas, 5);
  assert.equal(find(multi, "StatefulSet", "-nats"), undefined, "no NATS of our own with an external URL");
  // Several BuildKits: a StatefulSet, each replica named to the workers, and the server
  // certificate good for every replica's name.
  const bks = find(multi, "StatefulSet", "-buildkit")!;
  assert.equal(bks.spec.replicas, 3);
  assert.equal(bks.spec.serviceName, "vp-vuln-patcher-buildkit-headless");
  assert.equal(find(multi, "Service", "-buildkit-headless")?.spec.clusterIP, "None");
  const addrArg = (
    find(multi, "Deployment", "-worker")!.spec.template.spec.containers[0].args as string[]
  ).find((a) => a.startsWith("--buildkit-addr="))!;
  assert.deepEqual(
    addrArg.slice("--buildkit-addr=".length).split(","),
    [0, 1, 2].map(
      (i) => `tcp://vp-vuln-patcher-buildkit-${i}.vp-vuln-patcher-buildkit-headless.${NS}.svc:1234`,
    ),
  );
  const crt = Buffer.from(find(multi, "Secret", "-buildkit-server")!.data["tls.crt"], "base64").toString();
  const san = new X509Certificate(crt).subjectAltName ?? "";
  assert.ok(san.includes(`DNS:*.vp-vuln-patcher-buildkit-headless.${NS}.svc`), san);
  assert.equal(multi.filter((d) => d.kind === "ServiceMonitor").length, 2);
  const env = find(multi, "Deployment", "-worker")!.spec.template.spec.containers[0].env;
  assert.ok(
    env.some((e: any) => e.name === "NATS_PASSWORD" && e.valueFrom.secretKeyRef.name === "nats-auth"),
  );
});

/** A kubeconfig for a ServiceAccount, with a real token from the TokenRequest API. */
test("chart - rendered manifests pass a server-side dry run; as the chart's ServiceAccounts, the controller and worker are denied what their rules do not grant", async () => {
  // Their whole job with this RBAC runs in Pods in test/cluster (the chart installed on a real node).
  await using env = await testEnv({ nats: false });
  const kc = env.kubeConfig();
  await createNamespace(kc, NS);
  // The chart makes the Job namespace; a dry run cannot put a Role into it before it exists.
  await createNamespace(kc, `${NS}-copa`);
  const kubectl = (args: string[], input?: string) => kubectlAs(env, args, input);
  // CRDs first (a dry run cannot create objects of a kind that does not exist yet).
  const crdDoc = (await render("default")).filter((d) => d.kind === "CustomResourceDefinition");
  await kubectl(["apply", "--server-side", "-f", "-"], crdDoc.map((d) => JSON.stringify(d)).join("\n"));
  await kubectl([
    "apply",
    "--server-side",
    "-f",
    join(
      REPO_ROOT,
      "src",
      "devenv",
      "sbomscanner",
      "storage.sbomscanner.kubewarden.io_vulnerabilityreports.yaml",
    ),
  ]);
  await kubectl([
    "wait",
    "--for=condition=Established",
    "crd/patchjobs.vulnpatcher.io",
    "crd/patchpolicies.vulnpatcher.io",
    "crd/tenantgrants.vulnpatcher.io",
    "crd/vulnerabilityreports.storage.sbomscanner.kubewarden.io",
  ]);
  for (const set of Object.keys(SETS)) {
    // ServiceMonitors need the Prometheus Operator's CRD, which this cluster does not have.
    const docs = (await render(set)).filter(
      (d) => d.kind !== "ServiceMonitor" && d.kind !== "CustomResourceDefinition",
    );
    const out = await kubectl(
      ["apply", "--server-side", "--dry-run=server", "--field-manager=chart-test", "-f", "-"],
      docs.map((d) => JSON.stringify(d)).join("\n"),
    );
    assert.equal(out.trim().split("\n").length, docs.length, `${set}: every object accepted`);
  }

  // The real RBAC objects, then the two components on their ServiceAccounts' tokens.
  const rbac = (await render("default")).filter((d) =>
    ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(
      d.kind,
    ),
  );
  await kubectl(["apply", "--server-side", "-f", "-"], rbac.map((d) => JSON.stringify(d)).join("\n"));
  // And the chart's default PatchPolicy: without a policy nothing is patched.
  const policies = (await render("default")).filter((d) => d.kind === "PatchPolicy");
  assert.equal(policies.length, 1);
  await kubectl(["apply", "--server-side", "-f", "-"], policies.map((d) => JSON.stringify(d)).join("\n"));
  const ctlKc = await serviceAccountKubeconfig(env, NS, "vp-vuln-patcher-controller");
  const wrkKc = await serviceAccountKubeconfig(env, NS, "vp-vuln-patcher-worker");
  const apps = "apps";
  await createNamespace(kc, apps);
  // Outside their rules: denied.
  const asCtl = loadKubeConfig(ctlKc);
  const asWrk = loadKubeConfig(wrkKc);
  const denied = async (what: string, p: Promise<unknown>) => {
    const code = await p.then(
      () => 200,
      (e: unknown) => statusCode(e),
    );
    assert.equal(code, 403, `${what} must be forbidden, got ${code}`);
  };
  await denied(
    "worker reads a Secret in another namespace",
    asWrk.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: apps }),
  );
  await denied(
    "worker reads Secrets in its own namespace",
    asWrk.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: NS }),
  );
  await denied(
    "worker creates Jobs outside the Job namespace",
    asWrk.makeApiClient(BatchV1Api).createNamespacedJob({
      namespace: apps,
      body: {
        metadata: { name: "x" },
        spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "c", image: "x" }] } } },
      },
    }),
  );
  await denied(
    "controller changes a PatchPolicy (it only writes their status)",
    asCtl.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: "patchpolicies",
      namespace: apps,
      body: { apiVersion: "vulnpatcher.io/v1alpha1", kind: "PatchPolicy", metadata: { name: "x" }, spec: {} },
    }),
  );
  await denied(
    "worker creates PatchJobs",
    asWrk.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: "patchjobs",
      namespace: apps,
      body: {
        apiVersion: "vulnpatcher.io/v1alpha1",
        kind: "PatchJob",
        metadata: { name: "x" },
        spec: { source: "manual", image: { registryURI: "r", repository: "x", platform: "linux/amd64" } },
      },
    }),
  );
  await denied(
    "controller deletes a VulnerabilityReport",
    asCtl.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({
      group: "storage.sbomscanner.kubewarden.io",
      version: "v1alpha1",
      plural: "vulnerabilityreports",
      namespace: apps,
      name: "app",
    }),
  );
  await denied(
    "controller reads Secrets",
    asCtl.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: NS }),
  );
  await denied(
    "controller creates Jobs",
    asCtl.makeApiClient(BatchV1Api).createNamespacedJob({
      namespace: NS,
      body: {
        metadata: { name: "x" },
        spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "c", image: "x" }] } } },
      },
    }),
  );
  await denied(
    "controller touches Leases outside its namespace",
    asCtl
      .makeApiClient((await import("@kubernetes/client-node")).CoordinationV1Api)
      .listNamespacedLease({ namespace: apps }),
  );
});
