// The in-cluster path on a real node: containerd, kubelet, kube-scheduler, kube-proxy and
// CoreDNS on this machine, the chart installed with `helm install` from images BuildKit
// built from the repository's Dockerfiles. A VulnerabilityReport then flows: controller
// Pod -> NATS -> worker Pod -> copa Job Pod -> BuildKit Pod -> registry -> Succeeded.
// The tests share one environment and run in order; the last one stops it and checks
// that the host is as it was.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Container,
  type V1Deployment,
  type V1Pod,
} from "@kubernetes/client-node";
import { signedOnlyWebhook } from "../support/admission.ts";
import { setup, goBinary, cacheDir, type Env } from "../../src/devenv/index.ts";
import { buildClusterImages, type ClusterImages } from "../../src/devenv/cluster-images.ts";
import { installChart } from "../../src/devenv/chart.ts";
import { ignoreConflict, installCRDs } from "../../src/kube/index.ts";
import { parseImageRef, type PatchJob, POLICY_PLURAL } from "../../src/api/index.ts";
import {
  copaArgv,
  jobName,
  kubernetesExecutor,
  OPENVEX_TYPE,
  PROVENANCE_TYPE,
  verifyImage,
} from "../../src/patch/index.ts";
import { sbomscannerCRDs } from "../../src/devenv/crds.ts";
import { hostState, NODE_HTTPS_PROXY, NODE_IP } from "../../src/devenv/node.ts";
import { libraryReport, pushPythonAppImage } from "../../src/devenv/library-images.ts";
import { readLibraries } from "../../src/registry/index.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { waitForLibraries, waitForPhase } from "../support/patchjobs.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { retag } from "../../src/devenv/variants.ts";
import { testRegistryClient } from "../../src/devenv/registry.ts";

const run = promisify(execFile);
const NS = "vuln-patcher";
/** Where the chart runs copa Jobs: apart from BuildKit, Pod Security Admission "restricted". */
const JOBS = `${NS}-copa`;
const APPS = "default";
const SIGNING_SECRET = "vp-signing";
const SIGNING_PASSWORD = "the cluster test's signing password";
/** cosign's key pair for this run (cosign.key, cosign.pub). */
let keys: string;

async function signingKeySecret(): Promise<void> {
  keys = await mkdtemp(join(tmpdir(), "vp-cluster-keys-"));
  await run(goBinary("cosign"), ["generate-key-pair", "--output-key-prefix", join(keys, "cosign")], {
    env: { PATH: process.env.PATH, HOME: keys, COSIGN_PASSWORD: SIGNING_PASSWORD },
  });
  const core = env.kubeConfig().makeApiClient(CoreV1Api);
  await ignoreConflict(core.createNamespace({ body: { metadata: { name: NS } } }));
  await core.createNamespacedSecret({
    namespace: NS,
    body: {
      metadata: { name: SIGNING_SECRET },
      stringData: {
        "cosign.key": await readFile(join(keys, "cosign.key"), "utf8"),
        "cosign.pub": await readFile(join(keys, "cosign.pub"), "utf8"),
        "cosign.password": SIGNING_PASSWORD,
      },
    },
  });
}

let env: Env;
let images: ClusterImages;
let hostBefore: Awaited<ReturnType<typeof hostState>>;
const timings: Record<string, string> = {};

before(async () => {
  hostBefore = await hostState("/nonexistent-vuln-patcher-env");
  const t0 = Date.now();
  // NATS asks for a password, as the chart's own does: the Pods log in with the Secret's.
  env = await setup({ node: true, buildkit: true, natsAuth: true });
  timings["environment up (node Ready after)"] =
    `${((Date.now() - t0) / 1000).toFixed(1)} s (${(env.node!.readyMs / 1000).toFixed(1)} s)`;
});

after(async () => {
  await env?.stop();
  if (keys) await rm(keys, { recursive: true, force: true });
});

async function kubectl(args: string[]): Promise<string> {
  const { stdout } = await run(goBinary("kubectl"), ["--kubeconfig", env.kubeconfig, ...args], {
    timeout: 120_000,
  });
  return stdout;
}

async function pods(selector?: string, namespace = NS): Promise<V1Pod[]> {
  const list = await env
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .listNamespacedPod({ namespace, ...(selector ? { labelSelector: selector } : {}) });
  return list.items.filter((p) => !p.metadata?.deletionTimestamp);
}

/** The copa Jobs of one PatchJob (the executor labels each Job with it). */
async function jobsFor(patchJob: string): Promise<string[]> {
  const jobs = await env
    .kubeConfig()
    .makeApiClient(BatchV1Api)
    .listNamespacedJob({ namespace: JOBS, labelSelector: `vulnpatcher.io/patchjob=${patchJob}` });
  return jobs.items.map((j) => j.metadata!.name!);
}

/**
 * Image manifests the registry holds for a repository (each push of a new image adds
 * one); signatures and attestations (sigstore bundles, their referrers indexes) are not images.
 */
async function manifestRevisions(repo: string): Promise<number> {
  const root = join(env.registry!.dataDir, "docker/registry/v2");
  const dir = join(root, "repositories", repo, "_manifests/revisions/sha256");
  let n = 0;
  for (const hex of await readdir(dir).catch(() => [] as string[])) {
    const body = await readFile(join(root, "blobs/sha256", hex.slice(0, 2), hex, "data"), "utf8").catch(
      () => "{}",
    );
    const m = JSON.parse(body) as { config?: { mediaType?: string } };
    if (/image\.config|container\.image/.test(m.config?.mediaType ?? "")) n++;
  }
  return n;
}

/** Host processes by name, with their uid and whether their root filesystem is read-only. */
async function hostProcesses(
  comm: string,
): Promise<Array<{ pid: number; uid: number; rootReadOnly: boolean }>> {
  const out = [];
  for (const e of await readdir("/proc")) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    if ((await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim() !== comm) continue;
    const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    const mountinfo = await readFile(`/proc/${pid}/mountinfo`, "utf8").catch(() => "");
    const root = mountinfo.split("\n").find((l) => l.split(" ")[4] === "/");
    out.push({
      pid,
      uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1),
      rootReadOnly: !!root && root.split(" ")[5]!.split(",").includes("ro"),
    });
  }
  return out;
}

test("cluster - node Ready; images built by BuildKit from the Dockerfiles; helm install: every Pod Ready", async (t) => {
  const t0 = Date.now();
  // BuildKit's cache for these builds is kept in the cache directory (the environment's
  // BuildKit starts empty): a warm machine rebuilds only what changed.
  images = await buildClusterImages({
    dir: env.dir,
    registry: env.registryHost,
    buildkitAddr: env.buildkitAddr,
    cacheDir: join(cacheDir(), "buildkit-cache"),
  });
  // Timings are printed for the record; cold against warm, and in-cluster against local, is `npm run bench -- --only P6`.
  timings["images (base images, build context, each Dockerfile)"] =
    `${((Date.now() - t0) / 1000).toFixed(1)} s ${JSON.stringify(images.seconds)}`;
  const registry = testRegistryClient();
  for (const ref of [
    `${images.vulnPatcher.repository}:${images.vulnPatcher.tag}`,
    `${images.copaRunner.repository}:${images.copaRunner.tag}`,
    images.buildkit,
  ])
    assert.ok(await registry.resolve(parseImageRef(ref)), `${ref} is in the registry`);

  await installCRDs(env.kubeConfig(), sbomscannerCRDs());
  // The workers sign what they publish: a key pair made by cosign, as a Secret of the
  // release namespace (what `cosign generate-key-pair k8s://...` makes).
  await signingKeySecret();
  const t2 = Date.now();
  // "default" is a tenant namespace: the worker may read Secrets there.
  await installChart(env, images, {
    extra: [
      "--set",
      "worker.ackWait=20s",
      "--set",
      `worker.namespaces[0]=${APPS}`,
      "--set",
      `signing.keySecret=${SIGNING_SECRET}`,
      // Rollouts may change workloads in "default" only.
      "--set",
      "rollout.enabled=true",
      "--set",
      `rollout.namespaces={${APPS}}`,
      // Library updates: pip inside the BuildKit Pod reaches PyPI through the node's proxy;
      // copa reaches BuildKit (a .svc name) and the registry (the node) directly.
      "--set",
      `worker.copaProxy.https=${NODE_HTTPS_PROXY}`,
      "--set",
      `worker.copaProxy.noProxy=.svc\\,${NODE_IP}\\,127.0.0.1`,
    ],
  });
  timings["helm install -> every Pod Ready"] = `${((Date.now() - t2) / 1000).toFixed(1)} s`;
  const running = await pods();
  const components = running.map((p) => p.metadata!.labels!["app.kubernetes.io/component"]).sort();
  assert.deepEqual(components, ["buildkit", "controller", "worker"]);
  for (const p of running)
    assert.equal(p.spec?.nodeName, "vp-node", `${p.metadata?.name} runs on the real node`);
  t.diagnostic(JSON.stringify(timings));
});

test("cluster - the chart's security contexts hold in the running containers: non-root, read-only root, no capabilities; only BuildKit privileged", async () => {
  for (const component of ["controller", "worker"]) {
    const out = await kubectl([
      "-n",
      NS,
      "exec",
      `deploy/vp-vuln-patcher-${component}`,
      "--",
      "sh",
      "-c",
      'grep -E "^(Uid|CapEff)" /proc/1/status; touch /probe 2>&1; echo "touch=$?"',
    ]);
    assert.match(out, /^Uid:\s+65532\s+65532/m, `${component}: ${out}`);
    assert.match(out, /^CapEff:\s+0{16}$/m, `${component} holds no capability`);
    assert.match(out, /Read-only file system/, `${component}: the root filesystem is read-only`);
    assert.match(out, /touch=1/);
  }
  const bk = await kubectl([
    "-n",
    NS,
    "exec",
    "statefulset/vp-vuln-patcher-buildkit",
    "--",
    "grep",
    "CapEff",
    "/proc/1/status",
  ]);
  assert.doesNotMatch(bk, /CapEff:\s+0{16}/, "BuildKit is privileged");
  const privileged = (await pods())
    .filter((p) => p.spec?.containers.some((c) => c.securityContext?.privileged))
    .map((p) => p.metadata!.labels!["app.kubernetes.io/component"]);
  assert.deepEqual(privileged, ["buildkit"], "only BuildKit is privileged");
});

let first: { name: string; digest: string; reference: string };

test("cluster - report -> controller Pod -> NATS -> worker Pod -> copa Job Pod -> BuildKit Pod -> registry: Succeeded; the Job's logs through the apiserver; copa ran as non-root on a read-only root", async (t) => {
  const kc = env.kubeConfig();
  const report = await honestReportForImage(env.images!.vulnerable, "bookworm", APPS);
  const findings = (report.report as { results: Array<{ vulnerabilities: Array<{ cve: string }> }> })
    .results[0]!.vulnerabilities;
  const t0 = Date.now();
  await reportsApi(kc).create(report);
  // While the Job's Pod runs, copa is a process on this machine: look at it from outside.
  // Only copa processes that were not there before the report (none should be).
  const earlier = new Set((await hostProcesses("copa")).map((p) => p.pid));
  const seen = waitFor(
    "copa running in the Job's Pod",
    async () => (await hostProcesses("copa")).find((p) => !earlier.has(p.pid)),
    300_000,
    100,
  ).then(
    (p) => ({ p }),
    (err: Error) => ({ err }),
  );
  const pj = await waitForPhase(kc, APPS, "bookworm", ["Succeeded", "Failed", "NoOp"], 600_000);
  timings["report -> Succeeded, in the cluster"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  const observed = await seen;
  if ("err" in observed) throw observed.err;
  const copa = observed.p;
  assert.equal(copa.uid, 65532, "copa runs as the chart's non-root user");
  assert.ok(copa.rootReadOnly, "copa's root filesystem is read-only");
  const ref = pj.status!.patchedImage!;
  assert.equal(ref.reference, `${env.registryHost}/library/debian:bookworm-vuln-patched`);
  const tag = await testRegistryClient().manifestFor(parseImageRef(ref.reference!));
  assert.equal(tag?.digest, ref.digest, "the digest recorded is what the registry serves");
  assert.deepEqual(pj.status?.fixedCVEs, [...new Set(findings.map((f) => f.cve))].sort());
  first = { name: "bookworm", digest: ref.digest!, reference: ref.reference! };
  // Signed by the worker Pod (cosign in the image, the key from the Secret), with its
  // VEX (made from the verified fixes: copa ran in a Job) and provenance attestations.
  assert.deepEqual(pj.status?.signature?.digest, ref.digest);
  const verified = await verifyImage(ref.reference!, {
    key: join(keys, "cosign.pub"),
    types: [OPENVEX_TYPE, PROVENANCE_TYPE],
    insecureHosts: [env.registryHost],
  });
  assert.equal(verified.digest, ref.digest);
  const vexCVEs = (
    verified.attestations[OPENVEX_TYPE] as { statements: Array<{ vulnerability: { name: string } }> }
  ).statements.map((x) => x.vulnerability.name);
  for (const cve of pj.status!.fixedCVEs!) assert.ok(vexCVEs.includes(cve), `${cve} in the VEX`);

  const jobs = await jobsFor("bookworm");
  assert.equal(jobs.length, 1, `one Job: ${jobs.join(", ")}`);
  const logs = await kubectl(["-n", JOBS, "logs", `job/${jobs[0]}`]);
  assert.match(logs, /Patched image/, "copa's output, read from the kubelet through the apiserver");
  t.diagnostic(JSON.stringify(timings));
});

test("cluster - a second report for the same image ends NoOp (AlreadyPatched) without a Job", async () => {
  assert.ok(first, "needs the patch above");
  const kc = env.kubeConfig();
  const revs = await manifestRevisions("library/debian");
  await reportsApi(kc).create(await honestReportForImage(env.images!.vulnerable, "bookworm-again", APPS));
  const pj = await waitForPhase(kc, APPS, "bookworm-again", ["Succeeded", "Failed", "NoOp"], 300_000);
  assert.equal(pj.status?.phase, "NoOp", pj.status?.message);
  assert.equal(pj.status?.reason, "AlreadyPatched");
  assert.equal(pj.status?.patchedImage?.digest, first.digest, "it names the image that holds the patch");
  assert.deepEqual(await jobsFor("bookworm-again"), [], "no Job");
  assert.equal(await manifestRevisions("library/debian"), revs, "nothing pushed");
});

test("cluster - the worker Pod deleted mid-patch (grace 0): exactly one patched image, the PatchJob Succeeded", async (t) => {
  const kc = env.kubeConfig();
  await retag(env.registryHost, "library/debian", "bookworm-vuln", "bookworm-vuln-2");
  const image = `${env.registryHost}/library/debian:bookworm-vuln-2`;
  const revs = await manifestRevisions("library/debian");
  await reportsApi(kc).create(await honestReportForImage(image, "bookworm-2", APPS));
  // Mid-patch: the copa Job's Pod is running.
  const job = await waitFor(
    "the copa Job's Pod running",
    async () => {
      const [name] = await jobsFor("bookworm-2");
      if (!name) return undefined;
      const [pod] = await pods(`job-name=${name}`, JOBS);
      return pod?.status?.phase === "Running" ? pod : undefined;
    },
    300_000,
    200,
  );
  const [worker] = await pods("app.kubernetes.io/component=worker");
  assert.ok(worker, "a worker Pod");
  await env
    .kubeConfig()
    .makeApiClient(CoreV1Api)
    .deleteNamespacedPod({ namespace: NS, name: worker.metadata!.name!, gracePeriodSeconds: 0 });
  t.diagnostic(`deleted ${worker.metadata!.name} while ${job.metadata!.name} ran`);
  const pj = await waitForPhase(kc, APPS, "bookworm-2", ["Succeeded", "Failed", "NoOp"], 600_000);
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  assert.ok(
    (pj.status?.attempts ?? 0) >= 2,
    `redelivered to the new worker Pod (attempts ${pj.status?.attempts})`,
  );
  assert.notEqual(pj.status?.worker, worker.metadata!.name, "finished by another worker Pod");
  assert.equal(await manifestRevisions("library/debian"), revs + 1, "exactly one new image in the registry");
  const tag = await testRegistryClient().manifestFor(parseImageRef(`${image}-patched`));
  assert.equal(tag?.digest, pj.status?.patchedImage?.digest);
  assert.deepEqual(
    await jobsFor("bookworm-2"),
    [job.metadata!.labels!["job-name"]],
    "one Job, followed by the new worker",
  );
});

test("cluster - a copa Job Pod that fails: its termination message reaches the executor, the Job is Failed", async () => {
  const kc = env.kubeConfig();
  const run = await kubernetesExecutor({
    kc,
    image: `${images.copaRunner.repository}:${images.copaRunner.tag}`,
    pollMs: 500,
  }).run({
    id: "fail-1",
    namespace: NS,
    timeoutMs: 120_000,
    args: () =>
      copaArgv({
        image: parseImageRef(env.images!.vulnerable),
        target: parseImageRef(`${env.registryHost}/library/debian:never`),
        buildkitAddr: "tcp://127.0.0.1:1",
        timeout: "1m",
      }),
  });
  assert.notEqual(run.exitCode, 0);
  assert.match(run.outputTail, /buildkit|connect|refused/i, run.outputTail);
  const j = await kc.makeApiClient(BatchV1Api).readNamespacedJob({ namespace: NS, name: jobName("fail-1") });
  assert.ok(j.status?.conditions?.some((c) => c.type === "Failed" && c.status === "True"));
});

test("cluster - admission on the node: a Pod of the image the worker Pod signed is admitted and runs; the vulnerable image re-tagged -patched is refused", async (t) => {
  assert.ok(first, "needs the signed patch above");
  const kc = env.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const ns = "signed-only";
  await core.createNamespace({ body: { metadata: { name: ns } } });
  const forged = `${env.registryHost}/library/debian:forged-patched`;
  await retag(env.registryHost, "library/debian", "bookworm-vuln", "forged-patched");
  const hook = await signedOnlyWebhook(kc, {
    namespace: ns,
    key: join(keys, "cosign.pub"),
    // Images that must be signed.
    images: [".*:[^/]*-patched(@sha256:[a-f0-9]{64})?", ".*@sha256:[a-f0-9]{64}"],
    insecureHosts: [env.registryHost],
  });
  try {
    const pod = (name: string, image: string) => ({
      metadata: { name },
      spec: {
        containers: [
          {
            name: "app",
            image,
            command: ["sleep", "3600"],
            securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: 65532 },
          },
        ],
      },
    });
    const refused = await waitFor(
      "the webhook refuses the unsigned image",
      async () =>
        await core.createNamespacedPod({ namespace: ns, body: pod(`forged-${Date.now()}`, forged) }).then(
          () => undefined,
          (e: unknown) => e as { code?: number; body?: string },
        ),
      30_000,
      500,
    );
    assert.equal(refused.code, 403, String(refused.body));
    assert.match(String(refused.body), /not signed by vuln-patcher's key/);
    const signed = `${env.registryHost}/library/debian@${first.digest}`;
    await core.createNamespacedPod({ namespace: ns, body: pod("signed", signed) });
    const running = await waitFor(
      "the signed Pod running on the node",
      async () => {
        const p = await core.readNamespacedPod({ namespace: ns, name: "signed" });
        return p.status?.phase === "Running" ? p : undefined;
      },
      180_000,
      500,
    );
    t.diagnostic(`admitted and running on ${running.spec?.nodeName}: ${signed}; refused: ${forged}`);
    await core.deleteNamespacedPod({ namespace: ns, name: "signed", gracePeriodSeconds: 0 });
  } finally {
    await hook.close();
  }
});

// ---- Rollout (issue 21) on the real node: Pods that run, probes, the kubelet's imageIDs.

const ROLLOUT_TAG = "rollout-1";
let rolloutImage: string;
let patchedRef: string;
const nonRoot = { allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: 65532 };

function app(
  name: string,
  image: string,
  o: {
    replicas?: number;
    probe?: string[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deadline?: number;
  } = {},
): V1Deployment {
  const container: V1Container = {
    name: "app",
    image,
    command: ["sleep", "3600"],
    securityContext: nonRoot,
    readinessProbe: { exec: { command: o.probe ?? ["true"] }, periodSeconds: 2, failureThreshold: 1 },
  };
  return {
    metadata: {
      name,
      labels: { app: name, ...o.labels },
      ...(o.annotations ? { annotations: o.annotations } : {}),
    },
    spec: {
      replicas: o.replicas ?? 1,
      ...(o.deadline ? { progressDeadlineSeconds: o.deadline } : {}),
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { terminationGracePeriodSeconds: 1, containers: [container] },
      },
    },
  };
}

/** The Deployment's Pods, all Ready, each as the kubelet reports it: the image ID it runs. */
async function readyImageIDs(namespace: string, name: string, replicas: number): Promise<string[]> {
  return waitFor(
    `${namespace}/${name}: ${replicas} Pods Ready`,
    async () => {
      const ps = await pods(`app=${name}`, namespace);
      const ready = ps.filter((p) =>
        p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
      );
      if (ps.length !== replicas || ready.length !== replicas) return undefined;
      return ready.map((p) => p.status!.containerStatuses![0]!.imageID);
    },
    240_000,
    500,
  );
}

/** A manual PatchJob of the rollout image with its own spec.rollout (NoOp AlreadyPatched names the patched image). */
async function manualRollout(name: string, rollout: Record<string, unknown>): Promise<void> {
  await env
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: "patchjobs",
      namespace: APPS,
      body: {
        apiVersion: "vulnpatcher.io/v1alpha1",
        kind: "PatchJob",
        metadata: { name },
        spec: {
          source: "manual",
          image: {
            registryURI: env.registryHost,
            repository: "library/debian",
            tag: ROLLOUT_TAG,
            platform: "linux/amd64",
          },
          rollout,
        },
      },
    });
}

async function patchJob(name: string): Promise<PatchJob> {
  return (await env.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: "patchjobs",
    namespace: APPS,
    name,
  })) as PatchJob;
}

test("cluster - rollout Auto: a Deployment (2 replicas) and a CronJob move to the patched digest, their Pods run it (kubelet's imageID); opted-out and Argo CD Skipped; another namespace untouched", async (t) => {
  const kc = env.kubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  libraryPatch = startLibraryPatch();
  libraryPatch.catch(() => {}); // reported by the library test, which awaits it
  await retag(env.registryHost, "library/debian", "bookworm-vuln", ROLLOUT_TAG);
  rolloutImage = `${env.registryHost}/library/debian:${ROLLOUT_TAG}`;
  const source = await testRegistryClient().manifestFor(parseImageRef(rolloutImage));
  await readyPolicy("rollout", {
    selector: { tag: "rollout-.*", fixableOnly: true },
    rollout: { mode: "Auto", timeoutSeconds: 180 },
  });
  await apps.createNamespacedDeployment({ namespace: APPS, body: app("web", rolloutImage, { replicas: 2 }) });
  await apps.createNamespacedDeployment({
    namespace: APPS,
    body: app("pinned", rolloutImage, { annotations: { "vulnpatcher.io/rollout": "false" } }),
  });
  await apps.createNamespacedDeployment({
    namespace: APPS,
    body: app("argo", rolloutImage, { labels: { "argocd.argoproj.io/instance": "shop" } }),
  });
  await batch.createNamespacedCronJob({
    namespace: APPS,
    body: {
      metadata: { name: "nightly" },
      spec: {
        schedule: "0 3 * * *",
        jobTemplate: {
          spec: {
            backoffLimit: 0,
            template: {
              spec: {
                restartPolicy: "Never",
                terminationGracePeriodSeconds: 1,
                containers: [
                  { name: "job", image: rolloutImage, command: ["sleep", "60"], securityContext: nonRoot },
                ],
              },
            },
          },
        },
      },
    },
  });
  const OTHER_NS = "rollout-elsewhere";
  await core.createNamespace({ body: { metadata: { name: OTHER_NS } } });
  await apps.createNamespacedDeployment({ namespace: OTHER_NS, body: app("web", rolloutImage) });
  for (const [ns, name, n] of [
    [APPS, "web", 2],
    [APPS, "pinned", 1],
    [APPS, "argo", 1],
    [OTHER_NS, "web", 1],
  ] as const)
    for (const id of await readyImageIDs(ns, name, n))
      assert.ok(id.endsWith(source!.digest), `${ns}/${name} runs the vulnerable digest: ${id}`);
  const otherGeneration = (await apps.readNamespacedDeployment({ namespace: OTHER_NS, name: "web" }))
    .metadata!.generation;

  await reportsApi(kc).create(await honestReportForImage(rolloutImage, "rollout-1", APPS));
  const pj = await waitForPhase(kc, APPS, "rollout-1", ["Succeeded", "Failed", "NoOp"], 600_000);
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  const tSucceeded = Date.now();
  const digest = pj.status!.patchedImage!.digest!;
  patchedRef = `${pj.status!.patchedImage!.reference}@${digest}`;
  const done = await waitFor(
    "every selected workload Updated",
    async () => {
      const x = await patchJob("rollout-1");
      return x.status?.rollout?.updated === 2 ? x : undefined;
    },
    300_000,
    500,
  ).catch(async (err: Error) => {
    // What the PatchJob and the controller say, for whoever reads the failure.
    const x = await patchJob("rollout-1");
    const logs = await kubectl(["-n", NS, "logs", "deploy/vp-vuln-patcher-controller", "--tail=60"]).catch(
      (e: Error) => e.message,
    );
    throw new Error(
      `${err.message}: policy ${JSON.stringify(x.spec.policyRef)}, rollout ${JSON.stringify(x.status?.rollout)}\n${logs}`,
    );
  });
  const ids = await readyImageIDs(APPS, "web", 2);
  timings["rollout: Succeeded -> every workload updated and Ready"] =
    `${((Date.now() - tSucceeded) / 1000).toFixed(1)} s`;
  for (const id of ids) assert.ok(id.endsWith(digest), `a Ready Pod of web runs the patched digest: ${id}`);
  assert.deepEqual(
    done.status!.rollout!.workloads.map((w) => [`${w.kind}/${w.name}`, w.state, w.reason ?? ""]),
    [
      ["CronJob/nightly", "Updated", ""],
      ["Deployment/argo", "Skipped", "GitOpsManaged"],
      ["Deployment/pinned", "Skipped", "OptedOut"],
      ["Deployment/web", "Updated", ""],
    ],
  );
  const web = await apps.readNamespacedDeployment({ namespace: APPS, name: "web" });
  assert.equal(web.spec!.template.spec!.containers[0]!.image, patchedRef, "set by digest");
  // The CronJob's next Job (as `kubectl create job --from=cronjob/nightly` makes it) runs the patched digest.
  await kubectl(["-n", APPS, "create", "job", "nightly-next", "--from=cronjob/nightly"]);
  const jobID = await waitFor(
    "the CronJob's next Job Pod running",
    async () => {
      const [p] = await pods("job-name=nightly-next", APPS);
      const id = p?.status?.containerStatuses?.[0]?.imageID;
      return id || undefined;
    },
    180_000,
    500,
  );
  assert.ok(jobID.endsWith(digest), `the Job's Pod runs ${jobID}`);
  for (const name of ["pinned", "argo"])
    for (const id of await readyImageIDs(APPS, name, 1))
      assert.ok(id.endsWith(source!.digest), `${name} still runs the vulnerable digest`);
  const other = await apps.readNamespacedDeployment({ namespace: OTHER_NS, name: "web" });
  assert.equal(other.metadata!.generation, otherGeneration, "the other namespace's Deployment untouched");
  assert.equal(other.spec!.template.spec!.containers[0]!.image, rolloutImage);
  t.diagnostic(JSON.stringify(timings));
});

test("cluster - rollout DryRun: the plan recorded, nothing changed", async () => {
  assert.ok(patchedRef, "needs the rollout above");
  const kc = env.kubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({ namespace: APPS, body: app("dry", rolloutImage) });
  await readyImageIDs(APPS, "dry", 1);
  const before = (await apps.readNamespacedDeployment({ namespace: APPS, name: "dry" })).metadata!.generation;
  // A manual PatchJob of the same image with its own rollout: NoOp AlreadyPatched names the patched image.
  await manualRollout("dry-plan", { mode: "DryRun" });
  const pj = await waitFor(
    "the DryRun plan",
    async () => {
      const x = await patchJob("dry-plan").catch(() => undefined);
      return x?.status?.rollout ? x : undefined;
    },
    300_000,
    500,
  );
  assert.equal(pj.status?.reason, "AlreadyPatched");
  const dry = pj.status!.rollout!.workloads.find((w) => w.name === "dry");
  assert.deepEqual([dry?.state, dry?.to], ["Planned", patchedRef]);
  assert.equal(
    (await apps.readNamespacedDeployment({ namespace: APPS, name: "dry" })).metadata!.generation,
    before,
    "nothing changed",
  );
});

test("cluster - rollout rollback: a readiness probe that fails on the patched image puts the previous image back; RolledBack with the probe's reason; Available again with the old Pods; the PatchJob's other workload untouched", async (t) => {
  assert.ok(patchedRef, "needs the rollout above");
  const kc = env.kubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  // Ready only while the package the patch changes is at its vulnerable version.
  const report = await honestReportForImage(rolloutImage, "probe-source", APPS);
  const f = (
    report.report as {
      results: Array<{ vulnerabilities: Array<{ packageName: string; installedVersion: string }> }>;
    }
  ).results[0]!.vulnerabilities[0]!;
  const probe = [
    "sh",
    "-c",
    `v=$(dpkg-query -W -f='\${Version}' ${f.packageName}); test "$v" = "${f.installedVersion}" || { echo "${f.packageName} is $v, the app wants ${f.installedVersion}"; exit 1; }`,
  ];
  await apps.createNamespacedDeployment({
    namespace: APPS,
    body: app("a-fragile", rolloutImage, { probe, deadline: 20 }),
  });
  const oldIDs = await readyImageIDs(APPS, "a-fragile", 1);
  await manualRollout("fragile", { mode: "Auto", timeoutSeconds: 120 });
  const started = await waitFor(
    "a-fragile Updating",
    async () => {
      const x = await patchJob("fragile").catch(() => undefined);
      const w = x?.status?.rollout?.workloads.find((y) => y.name === "a-fragile");
      return w?.state === "Updating" ? x : undefined;
    },
    300_000,
    300,
  );
  assert.ok(started);
  const pj = await waitFor(
    "a-fragile RolledBack",
    async () => {
      const x = await patchJob("fragile");
      const w = x.status?.rollout?.workloads.find((y) => y.name === "a-fragile");
      return w?.state === "RolledBack" ? x : undefined;
    },
    240_000,
    300,
  );
  const items = pj.status!.rollout!.workloads;
  const fragile = items.find((w) => w.name === "a-fragile")!;
  assert.equal(fragile.reason, "ProgressDeadlineExceeded");
  assert.match(
    fragile.message ?? "",
    new RegExp(
      `Readiness probe failed: ${f.packageName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is \\S+, the app wants`,
    ),
    fragile.message,
  );
  const dry = items.find((w) => w.name === "dry")!;
  assert.deepEqual([dry.state, dry.reason], ["Skipped", "RolloutStopped"]);
  const d = await apps.readNamespacedDeployment({ namespace: APPS, name: "a-fragile" });
  assert.equal(d.spec!.template.spec!.containers[0]!.image, rolloutImage, "the previous image back");
  assert.ok(
    d.status?.conditions?.some((c) => c.type === "Available" && c.status === "True"),
    "Available",
  );
  assert.deepEqual(await readyImageIDs(APPS, "a-fragile", 1), oldIDs, "the old Pod's image");
  assert.equal(
    (await apps.readNamespacedDeployment({ namespace: APPS, name: "dry" })).spec!.template.spec!
      .containers[0]!.image,
    rolloutImage,
    "the other workload untouched",
  );
  const record = JSON.parse(d.metadata!.annotations!["vulnpatcher.io/rolled-back"]!) as {
    at: string;
    reason: string;
  };
  assert.equal(record.reason, "ProgressDeadlineExceeded");
  // From the change to the failure seen (progressDeadlineSeconds: 20), and the rollback itself.
  const secs = (a: string, b: string) => `${((Date.parse(b) - Date.parse(a)) / 1000).toFixed(1)} s`;
  timings["rollout: patched image set -> failure seen (progressDeadlineSeconds 20)"] = secs(
    fragile.startedAt!,
    record.at,
  );
  timings["rollout: rollback written -> previous image healthy, RolledBack"] = secs(
    record.at,
    fragile.finishedAt!,
  );
  t.diagnostic(`${fragile.reason}: ${fragile.message}; ${JSON.stringify(timings)}`);
});

/** A PatchPolicy in APPS, once the controller has read it (its status says Ready): before its reports come. */
async function readyPolicy(name: string, spec: Record<string, unknown>): Promise<void> {
  const api = env.kubeConfig().makeApiClient(CustomObjectsApi);
  const at = { group: "vulnpatcher.io", version: "v1alpha1", plural: POLICY_PLURAL, namespace: APPS };
  await api.createNamespacedCustomObject({
    ...at,
    body: { apiVersion: "vulnpatcher.io/v1alpha1", kind: "PatchPolicy", metadata: { name }, spec },
  });
  await waitFor(
    `the ${name} policy Ready`,
    async () => {
      const p = (await api.getNamespacedCustomObject({ ...at, name })) as {
        status?: { conditions?: Array<{ type: string; status: string }> };
      };
      return p.status?.conditions?.find((c) => c.type === "Ready" && c.status === "True");
    },
    60_000,
    300,
  ).catch(async (err: Error) => {
    const logs = await kubectl(["-n", NS, "logs", "deploy/vp-vuln-patcher-controller", "--tail=40"]).catch(
      (e: Error) => e.message,
    );
    throw new Error(`${err.message}\n${logs}`);
  });
}

/**
 * The library patch's start (its image, its policy, its report): begun during the rollout
 * test, whose waits for the kubelet leave the BuildKit Pod idle, and checked below.
 */
let libraryPatch: Promise<number> | undefined;
async function startLibraryPatch(): Promise<number> {
  const kc = env.kubeConfig();
  const image = `${env.registryHost}/apps/python-app:1`;
  await pushPythonAppImage(env.registryHost, "apps/python-app:1", env.buildkitAddr);
  // Libraries only: OS updates in a Job are the tests' above (and apt would add its time).
  await readyPolicy("libraries", { selector: { repository: "apps/python-app" }, packageTypes: ["library"] });
  await reportsApi(kc).create(await libraryReport(image, "python-app", APPS, "python"));
  return Date.now();
}

test("cluster - library updates in a copa Job: pip inside the BuildKit Pod reaches PyPI through the node's proxy; the CVEs fixed, checked in the image's METADATA", async (t) => {
  assert.ok(libraryPatch, "started by the rollout test");
  const kc = env.kubeConfig();
  const t0 = await libraryPatch;
  const done = await waitForPhase(kc, APPS, "python-app", ["Succeeded", "Failed", "NoOp"], 600_000);
  timings["library patch in the cluster"] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  assert.equal(done.status?.phase, "Succeeded", done.status?.message);
  const pj = await waitForLibraries(kc, APPS, "python-app", 5);
  const reasons = Object.fromEntries((pj.status?.libraries ?? []).map((f) => [f.cve, f.reason]));
  assert.equal(reasons["CVE-2021-33503"], "Fixed", JSON.stringify(pj.status?.libraries));
  assert.equal(reasons["CVE-2024-37891"], "Fixed");
  assert.equal(reasons["CVE-2025-50181"], "BeyondPatchLevel");
  assert.equal(pj.spec.updates, undefined, "no OS updates asked for");
  const registry = testRegistryClient();
  const ref = { ...parseImageRef(pj.status!.patchedImage!.reference!), tag: undefined };
  const m = await registry.manifestFor({ ...ref, digest: pj.status!.patchedImage!.digest! }, "linux/amd64");
  const [versions] = await readLibraries(registry, ref, m!.manifest.layers, [
    { type: "python-pkg", name: "urllib3", path: pj.spec.libraryUpdates![0]!.path },
  ]);
  assert.deepEqual(versions, ["1.26.19"]);
  t.diagnostic(JSON.stringify(timings));
});

test("cluster - stopping the environment leaves no process, mount, bridge, iptables chain or cgroup; ip_forward as it was", async (t) => {
  const dir = env.dir;
  t.diagnostic(JSON.stringify(timings));
  const t0 = Date.now();
  await env.stop();
  t.diagnostic(`stopped in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const now = await hostState(dir);
  assert.deepEqual(now.processes, [], "no process of the environment or its Pods");
  assert.deepEqual(now.mounts, [], "no mount under the environment's directory");
  assert.equal(now.bridge, false, "no bridge");
  assert.deepEqual(now.chains, hostBefore.chains, "no iptables or ip6tables chain of ours");
  assert.deepEqual(now.cgroups, [], "no kubepods cgroup");
  assert.equal(now.ipForward, hostBefore.ipForward);
  assert.deepEqual(now.sysctls, hostBefore.sysctls, "the kernel settings the kubelet changed, restored");
  assert.deepEqual(now.hostDirs, hostBefore.hostDirs, "no host directory of the node's left");
});
