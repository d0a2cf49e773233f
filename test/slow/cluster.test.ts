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
import { BatchV1Api, CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { signedOnlyWebhook } from "../support/admission.ts";
import { setup, goBinary, cacheDir, type Env } from "../../src/devenv/index.ts";
import { buildClusterImages, type ClusterImages } from "../../src/devenv/cluster-images.ts";
import { installChart } from "../../src/devenv/chart.ts";
import { ignoreConflict, installCRDs } from "../../src/kube/index.ts";
import { parseImageRef } from "../../src/api/index.ts";
import {
  copaArgv,
  jobName,
  kubernetesExecutor,
  OPENVEX_TYPE,
  PROVENANCE_TYPE,
  verifyImage,
} from "../../src/patch/index.ts";
import { sbomscannerCRDs } from "../../src/devenv/crds.ts";
import { hostState } from "../../src/devenv/node.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { waitForPhase } from "../support/patchjobs.ts";
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
