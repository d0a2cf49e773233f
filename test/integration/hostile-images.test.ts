// Images made to hurt the worker, in the real registry, patched by a real worker process
// (the compiled CLI) and controller: a gzip bomb at var/lib/dpkg/status, a layer whose
// bytes on the registry's disk are not those of its digest, and a 1 GB dpkg status. Each
// must end Failed with a reason that names it, before copa runs, with nothing pushed,
// and the worker's memory bounded (its peak resident set, VmHWM, read from /proc).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createGzip } from "node:zlib";
import type { Env } from "../../src/devenv/index.ts";
import { freePort } from "../../src/devenv/index.ts";
import { parseImageRef } from "../../src/api/index.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import { startController, type RunningController } from "../../src/controller/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import type { NatsConnection } from "@nats-io/transport-node";
import { createPatchJob, manualSpec, waitForPhase } from "../support/patchjobs.ts";
import { localWorkerArgs, startCli, type CliProcess } from "../support/cli.ts";
import { reportFault } from "../support/faults.ts";
import { installGrant, namespaces, testEnv } from "../support/shared.ts";
import { tarHeader } from "../../src/devenv/variants.ts";

/** The chart's worker memory limit: the worker must stay under it whatever it reads. */
const WORKER_LIMIT_BYTES = 512 * 1024 * 1024;
const GiB = 1024 ** 3;

let env: Env;
let NS: string;
let REPO: string;
let nc: NatsConnection;
let ctl: RunningController;
let worker: CliProcess;
const registry = new RegistryClient();

const sha = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

/** A gzipped tar with one file of `size` bytes, its content repeated from `chunk`; streamed, never whole in memory. */
async function gzippedLayer(
  path: string,
  size: number,
  chunk: Buffer,
): Promise<{ gz: Buffer; diffId: string }> {
  const gzip = createGzip({ level: 1 });
  const out: Buffer[] = [];
  gzip.on("data", (b: Buffer) => out.push(b));
  const tarHash = createHash("sha256");
  const write = (b: Buffer) =>
    new Promise<void>((r) => {
      tarHash.update(b);
      if (gzip.write(b)) r();
      else gzip.once("drain", r);
    });
  await write(tarHeader(path, size));
  let left = size;
  while (left > 0) {
    const b = left >= chunk.length ? chunk : chunk.subarray(0, left);
    await write(b);
    left -= b.length;
  }
  await write(Buffer.alloc((512 - (size % 512)) % 512));
  await write(Buffer.alloc(1024));
  await new Promise<void>((r) => gzip.end(r));
  return { gz: Buffer.concat(out), diffId: "sha256:" + tarHash.digest("hex") };
}

async function putBlob(repo: string, blob: Buffer): Promise<string> {
  const base = `http://${env.registryHost}/v2/${repo}`;
  const digest = sha(blob);
  const start = await fetch(`${base}/blobs/uploads/`, { method: "POST" });
  assert.equal(start.status, 202);
  const loc = new URL(start.headers.get("location")!, base);
  loc.searchParams.set("digest", digest);
  const put = await fetch(loc, { method: "PUT", body: new Uint8Array(blob) });
  assert.equal(put.status, 201);
  return digest;
}

/** An image of one layer; returns its reference and digest. */
async function pushImage(
  tag: string,
  layer: { gz: Buffer; diffId: string },
): Promise<{ ref: string; digest: string; layer: string }> {
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [layer.diffId] },
      config: {},
    }),
  );
  const configDigest = await putBlob(REPO, config);
  const layerDigest = await putBlob(REPO, layer.gz);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: configDigest,
        size: config.length,
      },
      layers: [
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: layerDigest,
          size: layer.gz.length,
        },
      ],
    }),
  );
  const res = await fetch(`http://${env.registryHost}/v2/${REPO}/manifests/${tag}`, {
    method: "PUT",
    body: new Uint8Array(manifest),
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(res.status, 201);
  return { ref: `${env.registryHost}/${REPO}:${tag}`, digest: sha(manifest), layer: layerDigest };
}

async function manifestRevisions(): Promise<number> {
  const dir = join(
    env.registry!.dataDir,
    "docker/registry/v2/repositories",
    REPO,
    "_manifests/revisions/sha256",
  );
  return (await readdir(dir).catch(() => [])).length;
}

async function peakRss(pid: number): Promise<number> {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

before(async () => {
  env = await testEnv();
  NS = (await namespaces(env, "hostile")).hostile!;
  REPO = `${NS}/hostile`;
  // Manual PatchJobs of images no report names: this file is about the images.
  await installGrant(env, NS, "*");
  nc = await connectNats({ url: env.natsURL, name: "hostile-test" });
  ctl = await startController({ kc: env.kubeConfig(), nc, namespaces: [NS], policyNamespace: NS });
  const port = await freePort();
  worker = await startCli([...localWorkerArgs(env), "--listen", `127.0.0.1:${port}`, "--max-deliver", "2"], {
    logDir: env.dir,
    name: `${NS}-worker`,
    listenPort: port,
  });
});

after(async () => {
  await worker?.stop();
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

const UPDATES = [
  {
    name: "libc6",
    installedVersion: "2.36-9",
    fixedVersion: "2.36-9+deb12u9",
    vulnerabilityIDs: ["CVE-2025-0001"],
  },
];

async function patchOf(name: string, image: { ref: string; digest: string }) {
  await createPatchJob(
    env.kubeConfig(),
    NS,
    name,
    manualSpec(image.ref, image.digest, { os: { type: "debian", version: "12" }, updates: UPDATES }),
  );
  return waitForPhase(env.kubeConfig(), NS, name, ["Failed", "Succeeded", "NoOp"], 300_000);
}

test("hostile images - a gzip bomb, a corrupted blob and a 1 GB dpkg status: each Failed with its reason, no copa run, nothing pushed, the worker's memory bounded", async (t) => {
  const bombLayer = await gzippedLayer("var/lib/dpkg/status", GiB, Buffer.alloc(1024 * 1024));
  const bomb = await pushImage("bomb", bombLayer);
  const stanza = Buffer.from(
    "Package: filler\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\n",
  );
  const big = await pushImage(
    "big-status",
    await gzippedLayer("var/lib/dpkg/status", GiB, Buffer.concat(Array(8192).fill(stanza))),
  );
  // A layer whose bytes on the registry's disk are not those of its digest (the registry
  // checks on upload, so the disk is changed behind its back, as a broken mirror would).
  const real = await gzippedLayer(
    "var/lib/dpkg/status",
    4096,
    Buffer.from("Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n"),
  );
  const corrupted = await pushImage("corrupted", real);
  const hex = corrupted.layer.slice("sha256:".length);
  const onDisk = join(env.registry!.dataDir, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
  const bytes = await readFile(onDisk);
  bytes[bytes.length - 20]! ^= 0xff;
  await writeFile(onDisk, bytes);
  const revisions = await manifestRevisions();

  const results: Record<string, { phase?: string; reason?: string; message?: string; attempts?: number }> =
    {};
  for (const [name, image, reason] of [
    ["bomb", bomb, "ImageTooLarge"],
    ["corrupted", corrupted, "BlobDigestMismatch"],
    ["big-status", big, "ImageTooLarge"],
  ] as const) {
    const pj = await patchOf(name, image);
    results[name] = { ...pj.status };
    assert.equal(pj.status?.phase, "Failed", `${name}: ${pj.status?.message}`);
    assert.equal(pj.status?.reason, reason, `${name}: ${pj.status?.message}`);
    assert.equal(pj.status?.attempts, 1, `${name}: permanent, not retried`);
    assert.equal(pj.status?.patchedImage, undefined);
  }
  assert.match(results.bomb!.message!, /var\/lib\/dpkg\/status.*over/);
  assert.match(results.corrupted!.message!, new RegExp(corrupted.layer));
  assert.equal(await manifestRevisions(), revisions, "nothing pushed");
  for (const tag of ["bomb-patched", "corrupted-patched", "big-status-patched"])
    assert.equal(await registry.resolve(parseImageRef(`${env.registryHost}/${REPO}:${tag}`)), undefined);
  const log = await readFile(worker.logFile, "utf8");
  assert.doesNotMatch(log, /"stage":"copa"/, "copa never ran");
  const peak = await peakRss(worker.pid);
  assert.ok(peak < WORKER_LIMIT_BYTES, `the worker's peak resident set ${Math.round(peak / 2 ** 20)} MiB`);
  assert.ok(!worker.child.killed && worker.child.exitCode === null, "the worker is still up");
  for (const [name, r] of Object.entries(results))
    reportFault(t, {
      fault: `hostile-image-${name}`,
      injected:
        name === "bomb"
          ? `var/lib/dpkg/status of 1 GiB zeros in a gzip layer of ${Math.round(bombLayer.gz.length / 1024)} KiB`
          : name === "corrupted"
            ? "a layer whose bytes on the registry's disk differ from its digest (one byte flipped)"
            : "a 1 GiB dpkg status of package stanzas",
      expected:
        "Failed with a reason naming it, first attempt, no copa run, nothing pushed, worker under 512 MiB",
      observed: `${r.phase}/${r.reason} after ${r.attempts} attempt: ${r.message?.slice(0, 120)}; worker peak RSS ${Math.round(peak / 2 ** 20)} MiB`,
    });
});
