// Several BuildKits, for real: two buildkitds, the worker given both addresses, the
// controller queuing hand-made PatchJobs, copa patching. Each patch runs on the replica
// the hash of its source repository picks (the prediction is src/patch/builders.ts's own
// function; the test checks the replica every PatchJob's status names). Then one BuildKit
// is killed while it patches: its patches finish on the other, none Failed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/transport-node";
import { goBinary, setup, type Env } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { createNamespace } from "../../src/devenv/kube.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { installGrant, ownImage } from "../support/shared.ts";
import { createPatchJob, getPatchJob, manualSpec } from "../support/patchjobs.ts";
import { reportFault } from "../support/faults.ts";
import { metricValue } from "../support/cli.ts";
import { imageSecurityUpdates } from "../../src/devenv/honest-report.ts";
import { type PatchJob, parseImageRef } from "../../src/api/index.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import { builderKey, builderOrder, localExecutor } from "../../src/patch/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { type RunningController, startController } from "../../src/controller/index.ts";
import { type RunningWorker, startWorker } from "../../src/worker/manager.ts";

const NS = "buildkits";
const IMAGES = 8;
let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let worker: RunningWorker;
let addrs: string[];
/** The eight repositories, four the hash puts on each replica, and where each goes. */
let images: Array<{ ref: string; digest: string; home: string }>;

before(async () => {
  env = await setup({ buildkit: true, buildkits: 2, controllerManager: false });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  await createNamespace(kc, NS);
  await installGrant(env, NS, "*");
  addrs = env.buildkits.map((b) => b.addr);
  assert.equal(addrs.length, 2);
  // Names until each replica has four (the addresses hold the environment's random
  // directory, so which names go where differs from run to run).
  const registry = parseImageRef(env.images!.vulnerable).registry;
  const per = new Map<string, string[]>(addrs.map((a) => [a, []]));
  for (let i = 0; [...per.values()].some((l) => l.length < IMAGES / 2); i++) {
    const repository = `${NS}/app-${i}`;
    const home = builderOrder(addrs, builderKey({ registry, repository }))[0]!;
    if (per.get(home)!.length < IMAGES / 2) per.get(home)!.push(repository);
  }
  images = [];
  for (const [home, repos] of per)
    for (const repository of repos) images.push({ ...(await ownImage(env, repository)), home });
  nc = await connectNats({ url: env.natsURL, name: "buildkits-test" });
  ctl = await startController({ kc, nc, namespaces: [NS], policyNamespace: NS, sweepIntervalMs: 5_000 });
  worker = await startWorker({
    kc,
    nc,
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry: new RegistryClient(),
    buildkitAddr: addrs.join(","),
    identity: "buildkits-worker",
    consumer: { concurrency: 4, ackWaitMs: 60_000, maxDeliver: 3, backoffBaseMs: 500, backoffMaxMs: 2_000 },
  });
});

/** Everything stopped, in order (the last test does it to look at the host afterwards). */
let stopped: Promise<void> | undefined;
const stopAll = () =>
  (stopped ??= (async () => {
    await worker?.stop();
    await ctl?.stop();
    await nc?.close();
    await env?.stop();
  })());

after(stopAll);

async function patchAll(round: string, extra: Parameters<typeof manualSpec>[2] = {}): Promise<void> {
  const kc = env.kubeConfig();
  await Promise.all(
    images.map((img, i) =>
      createPatchJob(
        kc,
        NS,
        `${round}-${i}`,
        manualSpec(img.ref, img.digest, { ...extra, target: { tagSuffix: `-${round}-patched` } }),
      ),
    ),
  );
}

async function finished(round: string): Promise<PatchJob[]> {
  const kc = env.kubeConfig();
  return waitFor(
    `the ${round} PatchJobs finished`,
    async () => {
      const pjs = await Promise.all(images.map((_, i) => getPatchJob(kc, NS, `${round}-${i}`)));
      return pjs.every((p) => ["Succeeded", "NoOp", "Failed"].includes(p.status?.phase ?? ""))
        ? pjs
        : undefined;
    },
    600_000,
    1000,
  );
}

test("buildkits - 8 images on 2 BuildKits: each repository on the replica its hash picks, both replicas used", async () => {
  const t0 = performance.now();
  // One package: the second round (update-all) is then a build neither BuildKit has cached.
  const updates = await imageSecurityUpdates(images[0]!.ref, ["liblzma5"]);
  await patchAll("first", { updates, os: { type: "debian", version: "12" } });
  const pjs = await finished("first");
  const seconds = (performance.now() - t0) / 1000;
  const phases = pjs.map((p) => `${p.metadata.name}: ${p.status?.phase} ${p.status?.message ?? ""}`);
  assert.ok(
    pjs.every((p) => p.status?.phase === "Succeeded"),
    phases.join("\n"),
  );
  pjs.forEach((p, i) =>
    assert.equal(
      p.status?.buildkit,
      images[i]!.home,
      `${p.metadata.name} ran where ${images[i]!.ref} hashes`,
    ),
  );
  const used = new Set(pjs.map((p) => p.status?.buildkit));
  assert.equal(used.size, 2, "both replicas used");
  process.stderr.write(`# ${IMAGES} images on 2 BuildKits: ${seconds.toFixed(1)} s\n`);
});

test("buildkits - one BuildKit killed while it patches: its patches finish on the other, none Failed", async (t) => {
  const kc = env.kubeConfig();
  const [victim, survivor] = addrs as [string, string];
  // Update-all this time: a build BuildKit has not cached, so the kill lands mid-patch.
  await patchAll("second");
  const onVictim = images.map((img, i) => ({ img, i })).filter((x) => x.img.home === victim);
  const running = await waitFor(
    "a patch running on the replica to kill",
    async () => {
      for (const { i } of onVictim) {
        const pj = await getPatchJob(kc, NS, `second-${i}`);
        if (pj.status?.phase === "Running") return pj.metadata.name;
      }
      return undefined;
    },
    120_000,
    200,
  );
  const component = env.buildkits.find((b) => b.addr === victim)!.component;
  const name = (addr: string) =>
    env.buildkits.find((b) => b.addr === addr)?.component.name ?? (addr || "none");
  await component.kill();
  const pjs = await finished("second");
  const phases = pjs.map(
    (p) => `${p.metadata.name}: ${p.status?.phase} on ${p.status?.buildkit} ${p.status?.message ?? ""}`,
  );
  assert.deepEqual(
    pjs.filter((p) => p.status?.phase === "Failed").map((p) => p.metadata.name),
    [],
    phases.join("\n"),
  );
  for (const { i } of onVictim)
    assert.equal(pjs[i]!.status?.buildkit, survivor, `second-${i} finished on the surviving replica`);
  // The one Running at the kill moved in its attempt (the worker's count); none waited for a redelivery.
  const metrics = await worker.registry.metrics();
  const failovers = metricValue(metrics, "vuln_patcher_buildkit_failovers_total", `buildkit="${victim}"`);
  assert.ok(failovers >= 1, `failovers from the killed replica: ${failovers}`);
  const moved = onVictim.length;
  reportFault(t, {
    fault: "buildkit-killed-mid-patch",
    injected: `${name(victim)} killed (SIGKILL) while ${running} was Running on it`,
    expected: `the ${moved} patches of its repositories finish on the other replica; none Failed`,
    observed:
      `${failovers} failovers; ` +
      pjs.map((p) => `${p.metadata.name} ${p.status?.phase} on ${name(p.status?.buildkit ?? "")}`).join(", "),
  });
});

test("buildkits - stopping the environment leaves no mount of either BuildKit, the killed one included", async () => {
  const dir = env.dir;
  await stopAll();
  const left = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(dir) || /\/buildkit-mount\d+$/.test(m));
  assert.deepEqual(left, []);
});
