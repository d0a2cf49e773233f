// Signed and proven, on the real environment: the worker patches with copa on BuildKit,
// signs the patched digest with cosign (a key pair made by cosign itself, offline) and
// attests copa's OpenVEX document and our provenance statement. Checked with cosign
// verify / verify-attestation, as a user would; a re-tag of another digest fails; a
// signing failure leaves the image on its staging tag only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import type { NatsConnection } from "@nats-io/transport-node";
import { goBinary, REPO_ROOT, type Env } from "../../src/devenv/index.ts";
import { installGrant, namespaces, ownImage, testEnv } from "../support/shared.ts";
import { imageSecurityUpdates } from "../../src/devenv/honest-report.ts";
import { createPatchJob, manualSpec, waitForPhase } from "../support/patchjobs.ts";
import {
  formatImageRef,
  type ImageRef,
  type PackageUpdate,
  parseImageRef,
  PatchError,
  Reason,
} from "../../src/api/index.ts";
import { CoreV1Api } from "@kubernetes/client-node";
import { signedOnlyWebhook } from "../support/admission.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { reportFault } from "../support/faults.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import {
  CosignSigner,
  localExecutor,
  patchImage,
  PROVENANCE_TYPE,
  stagingTag,
} from "../../src/patch/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { type RunningController, startController } from "../../src/controller/index.ts";
import { startWorker, type RunningWorker } from "../../src/worker/manager.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;
let worker: RunningWorker;
let NS: string;
let keys: string;
let updates: PackageUpdate[];
const PASSWORD = "a signing password";
const registry = new RegistryClient();
/** The worker's log lines (JSON), for the signing times. */
const lines: Array<Record<string, unknown>> = [];

function cosign(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(
      goBinary("cosign"),
      args,
      { env: { PATH: process.env.PATH, HOME: keys, ...env }, maxBuffer: 16 << 20 },
      (e, out, err) => resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, out, err }),
    ),
  );
}

const VERIFY = [
  "--key",
  "",
  "--insecure-ignore-tlog=true",
  "--allow-http-registry",
  "--allow-insecure-registry",
];
const verifyArgs = () => VERIFY.map((a, i) => (i === 1 ? join(keys, "cosign.pub") : a));

/** The in-toto statement of an attestation of `type` on `ref`, verified with the public key. */
async function attestation(
  ref: string,
  type: string,
): Promise<{ predicateType: string; predicate: any; subject: any }> {
  const r = await cosign(["verify-attestation", ...verifyArgs(), "--type", type, ref]);
  assert.equal(r.code, 0, r.err);
  const env = JSON.parse(r.out.trim().split("\n")[0]!) as { payload: string };
  return JSON.parse(Buffer.from(env.payload, "base64").toString("utf8"));
}

/** The built CLI (dist), as a user runs it. */
function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [join(REPO_ROOT, "dist", "src", "cli", "main.js"), ...args],
      { env: { ...process.env, PATH: `${dirname(goBinary("cosign"))}:${process.env.PATH}` } },
      (e, out, err) => resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, out, err }),
    ),
  );
}

before(async () => {
  env = await testEnv();
  NS = (await namespaces(env, "signing")).signing!;
  await installGrant(env, NS, "*");
  keys = await mkdtemp(join(tmpdir(), "vp-signing-"));
  const made = await cosign(["generate-key-pair", "--output-key-prefix", join(keys, "cosign")], {
    COSIGN_PASSWORD: PASSWORD,
  });
  assert.equal(made.code, 0, made.err);
  nc = await connectNats({ url: env.natsURL, name: "signing-test" });
  ctl = await startController({
    kc: env.kubeConfig(),
    nc,
    namespaces: [NS],
    policyNamespace: NS,
    sweepIntervalMs: 5_000,
  });
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  worker = await startWorker({
    kc: env.kubeConfig(),
    nc,
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry,
    buildkitAddr: env.buildkitAddr,
    identity: "signing-worker",
    signing: { key: join(keys, "cosign.key"), password: PASSWORD },
    tools: { copa: "0.14.2" },
    consumer: { concurrency: 1, ackWaitMs: 60_000, maxDeliver: 2, backoffBaseMs: 500, backoffMaxMs: 2_000 },
    log: pino({ level: "info" }, sink),
  });
  const img = await ownImage(env, `${NS}/debian`);
  updates = await imageSecurityUpdates(img.ref, ["liblzma5", "libpcre2-8-0", "perl-base"]);
});

after(async () => {
  await worker?.stop();
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
  if (keys) await rm(keys, { recursive: true, force: true });
});

test("signing - a patched image is signed; its OpenVEX and provenance attestations verify with the public key and say what was fixed, from what", async () => {
  const kc = env.kubeConfig();
  const img = await ownImage(env, `${NS}/debian`);
  await createPatchJob(
    kc,
    NS,
    "signed",
    manualSpec(img.ref, img.digest, { updates, os: { type: "debian", version: "12" } }),
  );
  const pj = await waitForPhase(kc, NS, "signed", ["Succeeded", "Failed", "NoOp"]);
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  const digest = pj.status!.patchedImage!.digest!;
  assert.deepEqual(pj.status?.signature, { digest, attestations: ["openvex", PROVENANCE_TYPE] });
  const byDigest = `${env.registryHost}/${NS}/debian@${digest}`;
  const byTag = pj.status!.patchedImage!.reference!;
  assert.equal(
    (await registry.manifestFor(parseImageRef(byTag)))?.digest,
    digest,
    "the tag holds the signed digest",
  );

  const verified = await cosign(["verify", ...verifyArgs(), byTag]);
  assert.equal(verified.code, 0, verified.err);
  assert.equal(JSON.parse(verified.out)[0].critical.image["docker-manifest-digest"], digest);

  const vex = await attestation(byDigest, "openvex");
  assert.equal(vex.predicateType, "https://openvex.dev/ns");
  assert.equal(vex.subject[0].digest.sha256, digest.slice("sha256:".length));
  const vexCVEs = [
    ...new Set(
      (vex.predicate.statements as any[]).map((s) => s.vulnerability.name ?? s.vulnerability["@id"]),
    ),
  ].sort();
  for (const cve of pj.status!.fixedCVEs!)
    assert.ok(vexCVEs.includes(cve), `${cve} in copa's VEX: ${vexCVEs.join(" ")}`);

  const prov = await attestation(byDigest, PROVENANCE_TYPE);
  assert.equal(prov.predicateType, PROVENANCE_TYPE);
  assert.equal(prov.predicate.source.digest, img.digest, "the provenance names the source digest");
  assert.equal(prov.predicate.patched.digest, digest);
  assert.deepEqual([...prov.predicate.fixedCVEs].sort(), pj.status!.fixedCVEs);
  assert.equal(prov.predicate.patchJob.uid, pj.metadata.uid);
  assert.deepEqual(prov.predicate.builder.tools, { copa: "0.14.2" });

  // The same patch asked again: the image under the tag is adopted (NoOp, AlreadyPatched)
  // and, already signed with its attestations, gets nothing more pushed.
  const revisions = async () =>
    (
      await readdir(
        join(
          env.registry!.dataDir,
          "docker/registry/v2/repositories",
          NS,
          "debian/_manifests/revisions/sha256",
        ),
      )
    ).length;
  const before = await revisions();
  await createPatchJob(
    kc,
    NS,
    "signed-again",
    manualSpec(img.ref, img.digest, { updates, os: { type: "debian", version: "12" } }),
  );
  const again = await waitForPhase(kc, NS, "signed-again", ["Succeeded", "Failed", "NoOp"]);
  assert.equal(again.status?.reason, "AlreadyPatched", again.status?.message);
  assert.equal(await revisions(), before, "no signature or attestation pushed again");

  // The password is in no log line.
  assert.ok(!lines.some((l) => JSON.stringify(l).includes(PASSWORD)));
});

test("signing - vuln-patcher verify checks the same with the public key and prints what the attestations say; a forged tag exits 1 with the reason", async () => {
  const kc = env.kubeConfig();
  const pj = await waitForPhase(kc, NS, "signed", ["Succeeded"]);
  const ref = `${env.registryHost}/${NS}/debian@${pj.status!.patchedImage!.digest}`;
  const ok = await cli(["verify", ref, "--key", join(keys, "cosign.pub")]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, new RegExp(`digest\\s+${pj.status!.patchedImage!.digest}`));
  assert.match(ok.out, /signature\s+verified/);
  for (const cve of pj.status!.fixedCVEs!) assert.ok(ok.out.includes(cve), `${cve} printed`);
  // The vulnerable image under an unsigned name: refused, one line, exit 1.
  const img = await ownImage(env, `${NS}/never-signed`);
  const bad = await cli([
    "verify",
    `${env.registryHost}/${NS}/never-signed@${img.digest}`,
    "--key",
    join(keys, "cosign.pub"),
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /^vuln-patcher: .*the signature does not verify/);
  assert.equal(bad.err.trim().split("\n").length, 1, bad.err);
});

test("signing - a re-tag of another digest under -patched fails verification; so does another key", async () => {
  const kc = env.kubeConfig();
  const img = await ownImage(env, `${NS}/debian`);
  const tagged = parseImageRef(`${env.registryHost}/${NS}/debian:bookworm-vuln-patched`);
  // The vulnerable image put under the patched tag, as an attacker with push rights would.
  const m = await registry.manifestBytes(tagged, img.digest);
  await registry.putManifest(tagged, m.mediaType, m.bytes);
  const forged = await cosign([
    "verify",
    ...verifyArgs(),
    `${env.registryHost}/${NS}/debian:bookworm-vuln-patched`,
  ]);
  assert.notEqual(forged.code, 0);
  assert.match(forged.err, /no (matching )?signatures|no signatures found/i, forged.err);
  // A key of someone else's does not verify our signature either.
  const other = await mkdtemp(join(tmpdir(), "vp-other-key-"));
  try {
    await cosign(["generate-key-pair", "--output-key-prefix", join(other, "k")], { COSIGN_PASSWORD: "x" });
    const pj = await waitForPhase(kc, NS, "signed", ["Succeeded"]);
    const ref = `${env.registryHost}/${NS}/debian@${pj.status!.patchedImage!.digest}`;
    const wrong = await cosign(["verify", "--key", join(other, "k.pub"), ...verifyArgs().slice(2), ref]);
    assert.notEqual(wrong.code, 0, "another key refuses it");
  } finally {
    await rm(other, { recursive: true, force: true });
  }
});

test("signing - a key that does not open: the patch fails with SigningKeyMissing and nothing gets the target tag (staging tag only)", async () => {
  const img = await ownImage(env, `${NS}/unsigned`);
  const source = parseImageRef(img.ref);
  const target: ImageRef = { ...source, tag: "bookworm-vuln-patched" };
  const signer = new CosignSigner({ key: join(keys, "cosign.key"), password: "not the password" });
  const err = await patchImage({
    id: "unsigned-1",
    source: { ...source, digest: img.digest },
    target,
    os: { type: "debian", version: "12" },
    updates,
    buildkitAddr: env.buildkitAddr,
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry,
    sign: (image, facts) => signer.signAndAttest(image, [{ type: PROVENANCE_TYPE, predicate: { facts } }]),
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof PatchError && err.reason === Reason.SigningKeyMissing, String(err));
  assert.equal(await registry.manifestFor(target), undefined, "the target tag was never written");
  const staged = await registry.manifestFor({ ...target, tag: stagingTag(target.tag!) });
  assert.ok(staged, "the patched image waits on its staging tag");
});

test("signing - what signing and attesting add to a patch (three patches, medians)", async () => {
  const kc = env.kubeConfig();
  for (let i = 0; i < 2; i++) {
    const img = await ownImage(env, `${NS}/timed-${i}`);
    await createPatchJob(
      kc,
      NS,
      `timed-${i}`,
      manualSpec(img.ref, img.digest, { updates, os: { type: "debian", version: "12" } }),
    );
    const pj = await waitForPhase(kc, NS, `timed-${i}`, ["Succeeded", "Failed", "NoOp"]);
    assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  }
  const patched = lines.filter((l) => l.msg === "patched" && typeof l.signMs === "number");
  assert.equal(patched.length, 3, "three signed patches logged");
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
  const sign = median(patched.map((l) => l.signMs as number));
  const copa = median(patched.map((l) => l.copaMs as number));
  process.stderr.write(
    `# signing and two attestations: median ${sign} ms per patch (copa itself: median ${copa} ms)\n`,
  );
  assert.ok(sign > 0);
});

test("signing - the admission webhook admits a Pod running the signed patched image and refuses one with an unsigned -patched image", async (t) => {
  const kc = env.kubeConfig();
  const pj = await waitForPhase(kc, NS, "signed", ["Succeeded"]);
  const signed = `${env.registryHost}/${NS}/debian@${pj.status!.patchedImage!.digest}`;
  const unsigned = await ownImage(env, `${NS}/unsigned-img`);
  const forged = parseImageRef(`${env.registryHost}/${NS}/unsigned-img:bookworm-vuln-patched`);
  const um = await registry.manifestBytes(forged, unsigned.digest);
  await registry.putManifest(forged, um.mediaType, um.bytes);

  const hook = await signedOnlyWebhook(kc, {
    namespace: NS,
    key: join(keys, "cosign.pub"),
    // Images that must be signed.
    images: [`.*/${NS}/.*`],
  });
  try {
    const core = kc.makeApiClient(CoreV1Api);
    const pod = (n: string, image: string) => ({
      metadata: { name: n },
      spec: { containers: [{ name: "app", image }] },
    });
    // The webhook configuration takes a moment to reach the apiserver's admission chain.
    const refused = await waitFor(
      "the webhook refuses the unsigned image",
      async () => {
        const err = await core
          .createNamespacedPod({ namespace: NS, body: pod(`forged-${Date.now()}`, formatImageRef(forged)) })
          .then(
            () => undefined,
            (e: unknown) => e as { code?: number; body?: string },
          );
        return err ? err : undefined;
      },
      30_000,
      500,
    );
    assert.equal(refused.code, 403, String(refused.body));
    assert.match(String(refused.body), /not signed by vuln-patcher's key/);
    const admitted = await core.createNamespacedPod({ namespace: NS, body: pod("signed", signed) });
    assert.equal(admitted.metadata?.name, "signed");
    reportFault(t, {
      fault: "unsigned-image-admission",
      injected: `a Pod of ${formatImageRef(forged)} (the vulnerable image under a -patched tag, unsigned)`,
      expected:
        "refused by the webhook (cosign verify with the workers' public key); the signed patched digest admitted",
      observed: `refused ${refused.code}; ${admitted.metadata?.name} admitted (${signed})`,
    });
  } finally {
    await hook.close();
  }
});
