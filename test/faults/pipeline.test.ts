// Fault suite, whole pipeline: the controller and a worker as processes (the compiled
// CLI, as a Deployment runs them), the real apiserver, NATS, BuildKit, copa and two
// registries (one with basic auth and a random password). Each test injects one fault
// and checks the end state: a terminal phase with a reason, nothing left Running, no
// copa process left behind, and (for credentials) the password nowhere it must not be.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { BatchV1Api, CoreV1Api } from "@kubernetes/client-node";
import { setup, freePort, isAlive, type Env } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { createNamespace, reportsApi, listPatchJobs } from "../../src/devenv/kube.ts";
import { honestReportForImage, imageSecurityUpdates } from "../../src/devenv/honest-report.ts";
import { createPatchJob, manualSpec, waitForPhase, getPatchJob } from "../support/patchjobs.ts";
import { installGrant } from "../support/shared.ts";
import { startCli, localWorkerArgs, metricValue, type CliProcess } from "../support/cli.ts";
import { registryServer } from "../../src/devenv/registry.ts";
import { retag } from "../../src/devenv/variants.ts";
import { reportFault, restartApiserver } from "../support/faults.ts";
import { type PackageUpdate, parseImageRef } from "../../src/api/index.ts";
import { credentialsFromDockerConfigDir, RegistryClient } from "../../src/registry/index.ts";
import { buildJob, copaArgv } from "../../src/patch/index.ts";

const run = promisify(execFile);
const NS = "faults";
const MAX_DELIVER = 3;

let env: Env;
let controller: CliProcess;
let worker: CliProcess;
let updates: PackageUpdate[];

before(async () => {
  env = await setup({ buildkit: true, authRegistry: true });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  await createNamespace(kc, NS);
  // These faults are about the pipeline, not tenancy: the namespace may patch anything.
  await installGrant(env, NS, "*");
  const [cport, wport] = [await freePort(), await freePort()];
  controller = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--listen",
      `127.0.0.1:${cport}`,
    ],
    { logDir: env.dir, name: "controller", listenPort: cport },
  );
  worker = await startCli(
    [
      ...localWorkerArgs(env),
      "--listen",
      `127.0.0.1:${wport}`,
      "--max-deliver",
      String(MAX_DELIVER),
      "--retry-base",
      "1s",
      "--log-level",
      "debug",
    ],
    // The registry credentials, as a mounted dockerconfigjson Secret provides them.
    {
      logDir: env.dir,
      name: "worker",
      listenPort: wport,
      env: { DOCKER_CONFIG: env.authRegistry!.dockerConfigDir },
    },
  );
  updates = await imageSecurityUpdates(env.images!.vulnerable, ["liblzma5", "libpcre2-8-0", "perl-base"]);
});

after(async () => {
  await worker?.stop();
  await controller?.stop();
  await env?.stop();
});

/** copa processes of this file's environment (its registry in their argv): other files' run beside it. */
async function copaProcesses(): Promise<number> {
  const { stdout } = await run("ps", ["-eo", "args"]);
  return stdout
    .split("\n")
    .filter(
      (l) =>
        /(^|\/)copa patch /.test(l) &&
        (l.includes(env.registryHost) || l.includes(env.authRegistry?.host ?? "\0")),
    ).length;
}

/** The end state every fault must leave: nothing Running in the namespace, no copa process. */
async function assertNothingLeft(): Promise<void> {
  const running = (await listPatchJobs(env.kubeConfig(), NS)).filter((p) => p.status?.phase === "Running");
  assert.deepEqual(
    running.map((p) => p.metadata.name),
    [],
    "nothing stuck in Running",
  );
  assert.equal(await copaProcesses(), 0, "no copa process left behind");
}

test("faults - registry down during the push: retried with backoff, then Failed with the reason", async (t) => {
  const kc = env.kubeConfig();
  // A registry that was there and went down: the push target.
  const gone = await registryServer(env.dir, join(env.dir, "registry-gone"), {
    name: "docker-registry-gone",
  });
  await gone.component.start();
  await gone.component.stop();
  await createPatchJob(
    kc,
    NS,
    "push-down",
    manualSpec(env.images!.vulnerable, env.images!.vulnerableDigest, {
      os: { type: "debian", version: "12" },
      updates,
      target: { reference: `${gone.host}/library/debian:bookworm-vuln-patched` },
    }),
  );
  const pj = await waitForPhase(kc, NS, "push-down", ["Failed", "Succeeded", "NoOp"], 300_000);
  assert.equal(pj.status?.phase, "Failed");
  assert.equal(pj.status?.reason, "MaxAttemptsExceeded");
  assert.equal(pj.status?.attempts, MAX_DELIVER);
  assert.match(pj.status?.message ?? "", /registry/i);
  assert.doesNotMatch(pj.status?.message ?? "", /BuildKit is unreachable/, "not blamed on BuildKit");
  await assertNothingLeft();
  reportFault(t, {
    fault: "registry-down-during-push",
    injected: `push target ${gone.host} stopped before the patch`,
    expected: `retried ${MAX_DELIVER} times with backoff, then Failed with a registry reason; nothing Running`,
    observed: `${pj.status?.phase}/${pj.status?.reason} after ${pj.status?.attempts} attempts: ${pj.status?.message?.slice(0, 160)}`,
  });
});

test("faults - copa exits 1 (a fixed version the archive does not have): Failed with copa's reason at once, nothing Running", async (t) => {
  const kc = env.kubeConfig();
  const lzma = updates.find((u) => u.name === "liblzma5")!;
  await createPatchJob(
    kc,
    NS,
    "copa-exit-1",
    manualSpec(env.images!.vulnerable, env.images!.vulnerableDigest, {
      os: { type: "debian", version: "12" },
      updates: [{ ...lzma, fixedVersion: "5.4.1-1+deb12u99" }],
      target: { tagSuffix: "-exit1" },
    }),
  );
  const pj = await waitForPhase(kc, NS, "copa-exit-1", ["Failed", "Succeeded", "NoOp"], 300_000);
  assert.equal(pj.status?.phase, "Failed", pj.status?.message);
  assert.equal(pj.status?.reason, "PackageError");
  assert.match(pj.status?.message ?? "", /liblzma5 version \S+ lower than required 5\.4\.1-1\+deb12u99/);
  assert.equal(pj.status?.attempts, 1, "a package error is permanent: no retry");
  assert.equal(
    await new RegistryClient().manifestFor(parseImageRef(`${env.images!.vulnerable}-exit1`)),
    undefined,
    "nothing pushed",
  );
  await assertNothingLeft();
  reportFault(t, {
    fault: "copa-exit-1",
    injected: "liblzma5 asked at 5.4.1-1+deb12u99, which bookworm-security does not have",
    expected: "Failed with copa's reason, no retry (permanent), nothing pushed, nothing Running",
    observed: `${pj.status?.phase}/${pj.status?.reason} after ${pj.status?.attempts} attempt: ${pj.status?.message?.slice(0, 160)}`,
  });
});

test("faults - copa still running past the PatchJob's timeout: stopped, retried with backoff, then Failed (Timeout), nothing Running", async (t) => {
  const kc = env.kubeConfig();
  await createPatchJob(
    kc,
    NS,
    "copa-timeout",
    manualSpec(env.images!.vulnerable, env.images!.vulnerableDigest, {
      os: { type: "debian", version: "12" },
      updates,
      target: { tagSuffix: "-timeout" },
      // A real patch takes 9-13 s here.
      options: { timeout: "3s" },
    }),
  );
  const pj = await waitForPhase(kc, NS, "copa-timeout", ["Failed", "Succeeded", "NoOp"], 300_000);
  assert.equal(pj.status?.phase, "Failed", pj.status?.message);
  assert.equal(pj.status?.reason, "MaxAttemptsExceeded");
  assert.equal(pj.status?.attempts, MAX_DELIVER);
  assert.match(pj.status?.message ?? "", /timed out|time limit|deadline/i);
  await assertNothingLeft();
  reportFault(t, {
    fault: "copa-timeout",
    injected: "spec.options.timeout 3s on a patch that takes ~10 s",
    expected: `copa stopped at the limit, retried ${MAX_DELIVER} times, then Failed; nothing Running, no copa left`,
    observed: `${pj.status?.phase}/${pj.status?.reason} after ${pj.status?.attempts} attempts: ${pj.status?.message?.slice(0, 160)}`,
  });
});

test("faults - registry credentials: the patch succeeds through the auth registry, and the password is in no log, Event, status, argv or Job spec", async (t) => {
  const kc = env.kubeConfig();
  const auth = env.authRegistry!;
  // The registry really requires the credentials.
  assert.equal((await fetch(`http://${auth.host}/v2/`)).status, 401);
  const report = await honestReportForImage(env.images!.vulnerable, "with-credentials", NS);
  (report.imageMetadata as Record<string, string>).registryURI = auth.host;
  assert.equal((report.imageMetadata as Record<string, string>).digest, auth.vulnerableDigest);
  const secretForms = [
    auth.password,
    Buffer.from(`${auth.username}:${auth.password}`).toString("base64"),
    Buffer.from(auth.password).toString("base64"),
  ];
  const leaksIn = (text: string) => secretForms.filter((s) => text.includes(s)).length;
  // Watch every process's argv while the patch runs.
  let argvLeaks = 0;
  let samples = 0;
  const watching = new AbortController();
  const watcher = (async () => {
    while (!watching.signal.aborted) {
      const { stdout } = await run("ps", ["-eo", "args"]);
      argvLeaks += leaksIn(stdout);
      samples++;
      await sleep(200);
    }
  })();
  let pj;
  try {
    await reportsApi(kc).create(report);
    pj = await waitForPhase(kc, NS, "with-credentials", ["Succeeded", "Failed", "NoOp"], 300_000);
  } finally {
    watching.abort();
    await watcher;
  }
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  const client = new RegistryClient({ credentials: credentialsFromDockerConfigDir(auth.dockerConfigDir) });
  const pushed = await client.manifestFor(parseImageRef(pj.status!.patchedImage!.reference!));
  assert.equal(pushed?.digest, pj.status!.patchedImage!.digest, "pushed to the auth registry, verified");

  // Logs: every component's and ours.
  const logs = (await readdir(env.dir)).filter((f) => f.endsWith(".log"));
  assert.ok(logs.includes("worker.log") && logs.includes("controller.log"));
  const logLeaks: string[] = [];
  for (const f of logs) if (leaksIn(await readFile(join(env.dir, f), "utf8"))) logLeaks.push(f);
  assert.deepEqual(logLeaks, [], "no log holds the password");
  // Events and PatchJobs, all of them.
  const events = await kc.makeApiClient(CoreV1Api).listEventForAllNamespaces();
  assert.equal(leaksIn(JSON.stringify(events)), 0, "no Event holds the password");
  const pjs = await listPatchJobs(kc, NS);
  assert.equal(leaksIn(JSON.stringify(pjs)), 0, "no PatchJob holds the password");
  assert.equal(argvLeaks, 0, `no process argv held the password (${samples} samples of ps)`);
  // The Job the kubernetes executor would run for it: only a Secret reference (server-side dry run).
  const job = buildJob(
    { kc, image: "vuln-patcher/copa-runner:test" },
    {
      id: "with-credentials-1",
      dockerConfig: readFileSync(join(env.authRegistry!.dockerConfigDir, "config.json"), "utf8"),
      namespace: NS,
      timeoutMs: 600_000,
      manifest: {
        apiVersion: "v1alpha1",
        metadata: { os: { type: "debian", version: "12" }, config: { arch: "amd64" } },
        updates: [],
      },
      args: (p) =>
        copaArgv({
          image: parseImageRef(`${auth.vulnerable}@${auth.vulnerableDigest}`),
          target: parseImageRef(`${auth.vulnerable}-patched`),
          buildkitAddr: "tcp://buildkitd:1234",
          manifestPath: p.manifest,
          timeout: "10m",
        }),
    },
    NS,
  );
  const created = await kc
    .makeApiClient(BatchV1Api)
    .createNamespacedJob({ namespace: NS, body: job, dryRun: "All" });
  assert.equal(leaksIn(JSON.stringify(created)), 0, "the Job spec holds no credential");
  const secretVolumes = (created.spec?.template.spec?.volumes ?? []).filter((v) => v.secret);
  assert.deepEqual(
    secretVolumes.map((v) => v.secret!.secretName),
    [job.metadata!.name],
    "credentials reach the Job only as a reference to the run's own Secret",
  );
  await assertNothingLeft();
  reportFault(t, {
    fault: "secrets",
    injected: `a patch through ${auth.host} (basic auth, random ${auth.password.length}-character password; worker at log level debug)`,
    expected:
      "Succeeded; the password (plain or base64) in no log, Event, PatchJob, process argv or Job spec",
    observed: `${pj.status?.phase} ${pj.status?.patchedImage?.digest?.slice(0, 19)}; leaks: ${logLeaks.length} of ${logs.length} logs, 0 Events, 0 PatchJobs, ${argvLeaks} in ${samples} ps samples, 0 in the Job (secret volume ${secretVolumes[0]?.secret?.secretName})`,
  });
});

test("faults - the apiserver restarted while the controller and worker run: their watches recover, a new report is patched, no restart of ours", async (t) => {
  const kc = env.kubeConfig();
  const reports = reportsApi(kc);
  const pids = [controller.pid, worker.pid];
  await reports.create(await honestReportForImage(env.images!.vulnerable, "before-restart", NS));
  const first = await waitForPhase(kc, NS, "before-restart", ["Succeeded", "Failed", "NoOp"], 300_000);
  assert.equal(first.status?.phase, "Succeeded", first.status?.message);

  const downMs = await restartApiserver(env);

  // A new tag of the image, reported after the restart: only a working watch sees it.
  await retag(env.registryHost, "library/debian", "bookworm-vuln", "after-restart");
  const t1 = performance.now();
  await reports.create(
    await honestReportForImage(env.images!.vulnerable, "after-restart", NS, "after-restart"),
  );
  const second = await waitForPhase(kc, NS, "after-restart", ["Succeeded", "Failed", "NoOp"], 300_000);
  const ms = performance.now() - t1;
  assert.equal(second.status?.phase, "Succeeded", second.status?.message);
  assert.ok(isAlive(controller.pid) && isAlive(worker.pid), "neither process restarted or exited");
  assert.deepEqual([controller.pid, worker.pid], pids);
  // And the first one was not patched again.
  assert.equal((await getPatchJob(kc, NS, "before-restart")).metadata.generation, first.metadata.generation);
  await assertNothingLeft();
  const lost = metricValue(await controller.metrics(), "vuln_patcher_leadership_lost_total");
  reportFault(t, {
    fault: "apiserver-restart",
    injected: `kube-apiserver stopped and started again (${(downMs / 1000).toFixed(1)} s down) with the controller and worker running`,
    expected: "watches recover by themselves; a report created after the restart is patched; same pids",
    observed: `${second.status?.phase} ${(ms / 1000).toFixed(1)} s after the report; pids unchanged (${pids.join(", ")}); the controller lost its lease ${lost} time(s) while the apiserver was down and led again`,
  });
});
