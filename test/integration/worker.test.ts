// The worker on the real environment: NATS JetStream, the real apiserver, BuildKit,
// copa and the registry. The controller (in-process) queues the PatchJobs, as it
// queues any PatchJob a user creates with kubectl.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { goBinary, type Env } from "../../src/devenv/index.ts";
import { installGrant, namespaces, ownImage, testEnv } from "../support/shared.ts";
import { imageSecurityUpdates } from "../../src/devenv/honest-report.ts";
import { createPatchJob, manualSpec, waitForPhase, getPatchJob } from "../../test/support/patchjobs.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { type PackageUpdate, parseImageRef } from "../../src/api/index.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import { localExecutor } from "../../src/patch/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { type RunningController, startController } from "../../src/controller/index.ts";
import { patchJobClient } from "../../src/kube/index.ts";
import { startWorker, type RunningWorker, type WorkerOptions } from "../../src/worker/manager.ts";
import { patchHandler } from "../../src/worker/handler.ts";
import { reportFault } from "../../test/support/faults.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let worker: RunningWorker;
let updates: PackageUpdate[];
const registry = new RegistryClient();
let NS: string;
const MAX_DELIVER = 3;
/** The vulnerable image in this file's own repository. */
let IMAGE: { ref: string; digest: string };
let REPO: string;

function workerOptions(buildkitAddr: string): WorkerOptions {
  return {
    kc: env.kubeConfig(),
    nc,
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry,
    buildkitAddr,
    identity: "test-worker",
    consumer: {
      concurrency: 2,
      ackWaitMs: 20_000,
      maxDeliver: MAX_DELIVER,
      backoffBaseMs: 500,
      backoffMaxMs: 2_000,
    },
  };
}

const controller = () =>
  startController({
    kc: env.kubeConfig(),
    nc,
    namespaces: [NS],
    policyNamespace: NS,
    sweepIntervalMs: 5_000,
  });

before(async () => {
  env = await testEnv();
  NS = (await namespaces(env, "worker")).worker!;
  // PatchJobs by hand, of images no report names, to other registries: about the worker,
  // not tenancy (test/integration/tenancy.test.ts), so this namespace may do anything.
  await installGrant(env, NS, "*");
  REPO = `${NS}/debian`;
  IMAGE = await ownImage(env, REPO);
  nc = await connectNats({ url: env.natsURL, name: "worker-test" });
  ctl = await controller();
  worker = await startWorker(workerOptions(env.buildkitAddr));
  updates = await imageSecurityUpdates(IMAGE.ref, ["liblzma5", "libpcre2-8-0", "perl-base"]);
});

after(async () => {
  await worker?.stop();
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

test("worker - a PatchJob for the vulnerable image ends Succeeded with a real digest and the fixed CVEs; patching the result again is a NoOp", async () => {
  const kc = env.kubeConfig();
  const spec = manualSpec(IMAGE.ref, IMAGE.digest, {
    os: { type: "debian", version: "12" },
    updates,
  });
  await createPatchJob(kc, NS, "debian", spec);
  const pj = await waitForPhase(kc, NS, "debian", ["Succeeded", "Failed", "NoOp"]);
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  const ref = pj.status!.patchedImage!;
  assert.equal(ref.reference, `${env.registryHost}/${REPO}:bookworm-vuln-patched`);
  const inRegistry = await registry.manifestFor(parseImageRef(ref.reference!));
  assert.equal(inRegistry?.digest, ref.digest, "the recorded digest is what the tag holds");
  assert.notEqual(ref.digest, IMAGE.digest);
  const expected = [...new Set(updates.flatMap((u) => u.vulnerabilityIDs ?? []))].sort();
  assert.deepEqual(pj.status?.fixedCVEs, expected);
  assert.equal(pj.status?.vulnerabilities?.after?.fixed, expected.length);
  assert.equal(pj.status?.attempts, 1);
  assert.equal(pj.status?.conditions?.find((c) => c.type === "Succeeded")?.status, "True");
  // The VEX travels with the image as a signed attestation (test/integration/signing.test.ts), never in a ConfigMap.
  const cms = await kc.makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace: NS });
  assert.deepEqual(
    cms.items.map((c) => c.metadata?.name).filter((n) => n !== "kube-root-ca.crt"),
    [],
    "no ConfigMap written by the worker",
  );

  // The same request against the patched image: every update is already in it.
  await createPatchJob(
    kc,
    NS,
    "debian-again",
    manualSpec(ref.reference!, ref.digest, {
      os: { type: "debian", version: "12" },
      updates,
      target: { tagSuffix: "-again" },
    }),
  );
  const again = await waitForPhase(kc, NS, "debian-again", ["Succeeded", "Failed", "NoOp"]);
  assert.equal(again.status?.phase, "NoOp", again.status?.message);
  assert.equal(
    await registry.resolve(parseImageRef(`${env.registryHost}/${REPO}:bookworm-vuln-patched-again`)),
    undefined,
    "nothing pushed",
  );

  // Another PatchJob for the same source and target: the tag already holds this patch.
  // Its first attempt made nothing, so NoOp (AlreadyPatched), pointing at the image.
  await createPatchJob(kc, NS, "debian-twin", spec);
  const twin = await waitForPhase(kc, NS, "debian-twin", ["Succeeded", "Failed", "NoOp"]);
  assert.equal(twin.status?.phase, "NoOp", twin.status?.message);
  assert.equal(twin.status?.reason, "AlreadyPatched");
  assert.deepEqual(twin.status?.patchedImage, ref, "the image that holds the patch");
  assert.deepEqual(twin.status?.fixedCVEs, expected);
  assert.equal(
    (await registry.manifestFor(parseImageRef(ref.reference!)))?.digest,
    ref.digest,
    "the tag is unchanged",
  );
});

test("worker - BuildKit unreachable: retried with backoff, then Failed with a clear reason; nothing left Running", async (t) => {
  const kc = env.kubeConfig();
  // BuildKit is shared with other test files: this file's worker is pointed at an address
  // where nothing listens instead (what a stopped buildkitd leaves: no socket).
  await worker.stop();
  worker = await startWorker(workerOptions(`unix://${env.dir}/stopped-buildkitd.sock`));
  try {
    await createPatchJob(
      kc,
      NS,
      "no-buildkit",
      manualSpec(IMAGE.ref, IMAGE.digest, {
        os: { type: "debian", version: "12" },
        updates,
        target: { tagSuffix: "-nobk" },
      }),
    );
    const pj = await waitForPhase(kc, NS, "no-buildkit", ["Failed", "Succeeded", "NoOp"], 180_000);
    assert.equal(pj.status?.phase, "Failed");
    assert.equal(pj.status?.reason, "MaxAttemptsExceeded");
    assert.match(pj.status?.message ?? "", /BuildKit is unreachable/);
    assert.equal(pj.status?.attempts, MAX_DELIVER);
    assert.equal(pj.status?.conditions?.find((c) => c.type === "Succeeded")?.status, "False");
    reportFault(t, {
      fault: "buildkit-down",
      injected: "the worker's BuildKit address has nothing listening (no buildkitd)",
      expected: `retried ${MAX_DELIVER} times with backoff, then Failed naming BuildKit; nothing Running`,
      observed: `${pj.status?.phase}/${pj.status?.reason} after ${pj.status?.attempts} attempts: ${pj.status?.message?.slice(0, 120)}`,
    });
  } finally {
    await worker.stop();
    worker = await startWorker(workerOptions(env.buildkitAddr));
  }
});

test("worker - a source image that does not exist fails at once, without retries", async () => {
  const kc = env.kubeConfig();
  await createPatchJob(
    kc,
    NS,
    "missing",
    manualSpec(`${env.registryHost}/library/nothing:1`, undefined, {
      os: { type: "debian", version: "12" },
      updates,
    }),
  );
  const pj = await waitForPhase(kc, NS, "missing", ["Failed", "Succeeded", "NoOp"]);
  assert.equal(pj.status?.reason, "ImageNotFound");
  assert.equal(pj.status?.attempts, 1);
});

test("worker - permanent errors fail on the first attempt; an unreachable registry is retried", async () => {
  const kc = env.kubeConfig();
  const spec = (image: string) =>
    manualSpec(image, undefined, {
      os: { type: "debian", version: "12" },
      updates,
      target: { tagSuffix: "-x" },
    });
  await createPatchJob(kc, NS, "bad-address", spec("127.0.0.1:1/nothing/here:never"));
  await createPatchJob(kc, NS, "no-repository", spec(`${env.registryHost}/${NS}/never-pushed:1`));
  await createPatchJob(kc, NS, "refused", spec("127.0.0.1:2/nothing/here:never"));
  const bad = await waitForPhase(kc, NS, "bad-address", ["Failed", "Succeeded", "NoOp"]);
  assert.deepEqual([bad.status?.reason, bad.status?.attempts], ["InvalidRegistryAddress", 1]);
  assert.match(bad.status!.message!, /cannot be reached at that address: bad port/);
  const missing = await waitForPhase(kc, NS, "no-repository", ["Failed", "Succeeded", "NoOp"]);
  assert.deepEqual([missing.status?.reason, missing.status?.attempts], ["ImageNotFound", 1]);
  const refused = await waitForPhase(kc, NS, "refused", ["Failed", "Succeeded", "NoOp"], 120_000);
  assert.deepEqual([refused.status?.reason, refused.status?.attempts], ["MaxAttemptsExceeded", MAX_DELIVER]);
  assert.match(refused.status!.message!, /ECONNREFUSED/);
});

test("worker - a dry run plans without patching", async () => {
  const kc = env.kubeConfig();
  await createPatchJob(
    kc,
    NS,
    "dry",
    manualSpec(IMAGE.ref, IMAGE.digest, {
      os: { type: "debian", version: "12" },
      updates,
      dryRun: true,
      target: { tagSuffix: "-dry" },
    }),
  );
  const pj = await waitForPhase(kc, NS, "dry", ["Planned", "Failed"]);
  assert.equal(pj.status?.phase, "Planned");
  assert.match(pj.status?.message ?? "", /dry run: would update 3 packages/);
  assert.deepEqual(
    pj.status?.plannedUpdates?.map((u) => u.name),
    updates.map((u) => u.name),
    "the plan: each update with its versions and CVEs",
  );
  assert.equal(
    await registry.resolve(parseImageRef(`${env.registryHost}/${REPO}:bookworm-vuln-dry`)),
    undefined,
  );
});

test("worker - early exits: each request that must not patch is dropped, and copa never runs", async () => {
  const kc = env.kubeConfig();
  const client = patchJobClient(kc);
  const outcomes: string[] = [];
  const handler = patchHandler({
    client,
    events: { normal() {}, warning() {} },
    executor: { kind: "local", run: () => assert.fail("copa must not run") },
    registry,
    buildkitAddr: env.buildkitAddr,
    identity: "early-exit-test",
    onOutcome: (o) => outcomes.push(o),
  });
  const delivery = (data: unknown, deliveryCount = 1) => ({
    data: new TextEncoder().encode(typeof data === "string" ? data : JSON.stringify(data)),
    deliveryCount,
    maxDeliver: MAX_DELIVER,
    working() {},
  });
  const signal = new AbortController().signal;
  // A PatchJob the test owns: suspended in Planned for generation 1, then moved to generation 2.
  await createPatchJob(
    kc,
    NS,
    "early",
    manualSpec(IMAGE.ref, IMAGE.digest, {
      os: { type: "debian", version: "12" },
      updates,
      dryRun: true,
      target: { tagSuffix: "-early" },
    }),
  );
  let pj = await waitForPhase(kc, NS, "early", ["Planned"]);
  const uid = pj.metadata.uid!;
  const rv = pj.metadata.resourceVersion;
  const cases: Array<[string, unknown, number?]> = [
    ["not JSON", "{{{"],
    ["no generation", { namespace: NS, name: "early", uid }],
    ["a PatchJob that does not exist", { namespace: NS, name: "nope", uid, generation: 1 }],
    [
      "another object with the same name (uid differs)",
      { namespace: NS, name: "early", uid: "00000000-0000-0000-0000-000000000000", generation: 1 },
    ],
    ["a generation that already finished", { namespace: NS, name: "early", uid, generation: 1 }],
  ];
  for (const [what, data] of cases) {
    const r = await handler.handle(delivery(data), signal);
    assert.deepEqual(r, { kind: "ack" }, what);
    assert.equal(outcomes.at(-1), "dropped", what);
  }
  pj = await getPatchJob(kc, NS, "early");
  assert.equal(pj.metadata.resourceVersion, rv, "nothing was written");

  // Generation 2, claimed by a worker that then died during the last allowed attempt.
  await ctl.stop(); // keep the controller from queuing generation 2 for the real worker
  pj = await waitFor("generation 2", async () =>
    client
      .updateSpec(await getPatchJob(kc, NS, "early"), { ...pj.spec, dryRun: false })
      .catch(() => undefined),
  );
  pj = await client.updateStatus(pj, {
    phase: "Running",
    observedGeneration: pj.metadata.generation,
    attempts: MAX_DELIVER,
    worker: "dead-worker",
    message: "patching",
  });
  assert.deepEqual(
    await handler.handle(delivery({ namespace: NS, name: "early", uid, generation: 1 }), signal),
    { kind: "ack" },
    "a stale generation",
  );
  assert.equal(outcomes.at(-1), "dropped");
  assert.deepEqual(
    await handler.handle(delivery({ namespace: NS, name: "early", uid, generation: 2 }, 1), signal),
    { kind: "ack" },
    "a duplicate while another worker patches",
  );
  assert.equal(outcomes.at(-1), "dropped");
  // The subscriber gives a delivery past the limit to `exhausted`, not `handle`.
  await handler.exhausted!(delivery({ namespace: NS, name: "early", uid, generation: 2 }, MAX_DELIVER + 1));
  assert.equal(outcomes.at(-1), "failed", "the redelivery after the last attempt died");
  pj = await getPatchJob(kc, NS, "early");
  assert.equal(pj.status?.phase, "Failed");
  assert.equal(pj.status?.reason, "MaxAttemptsExceeded");
  ctl = await controller();
});
