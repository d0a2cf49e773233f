// The real patch engine: BuildKit + copa + the vulnerable Debian image in a real
// registry. Nothing here is simulated.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { goBinary, type Env } from "../../src/devenv/index.ts";
import { ownImage, testEnv } from "../support/shared.ts";
import { securityPackages } from "../../src/devenv/debian.ts";
import { type PackageUpdate, parseImageRef, PatchError } from "../../src/api/index.ts";
import { readPackageDB, RegistryClient } from "../../src/registry/index.ts";
import { localExecutor } from "../../src/patch/local.ts";
import { patchImage } from "../../src/patch/patch-image.ts";

let env: Env;
let updates: PackageUpdate[];
const registry = new RegistryClient();
/** The vulnerable image in this file's own repository. */
const REPO = `engine-${process.pid}/debian`;
let IMAGE: { ref: string; digest: string };

before(async () => {
  env = await testEnv({ nats: false });
  IMAGE = await ownImage(env, REPO);
  const sec = await securityPackages();
  const src = parseImageRef(IMAGE.ref);
  const m = await registry.manifestFor(src);
  const db = await readPackageDB(registry, src, m!.manifest.layers);
  // Real fixes: the versions bookworm-security has now, for packages the image has older.
  updates = ["liblzma5", "libpcre2-8-0", "perl-base"].map((name) => ({
    name,
    installedVersion: db.packages.get(name)!,
    fixedVersion: sec.get(name)!.version,
    vulnerabilityIDs: [`TEST-${name}`],
  }));
});

after(async () => {
  await env?.stop();
});

test("patch engine - the vulnerable image really is vulnerable", () => {
  for (const u of updates)
    assert.notEqual(u.installedVersion, u.fixedVersion, `${u.name} is already at the security version`);
});

test("patch engine - copa patches liblzma5, libpcre2-8-0 and perl-base for real; a second run is a no-op", async () => {
  const source = { ...parseImageRef(IMAGE.ref), digest: IMAGE.digest };
  const target = parseImageRef(`${env.registryHost}/${REPO}:bookworm-vuln-patched`);
  const common = {
    source,
    target,
    updates,
    os: { type: "debian", version: "12" },
    buildkitAddr: env.buildkitAddr,
    timeout: "10m",
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry,
  };
  const t0 = Date.now();
  const r = await patchImage({ ...common, id: "engine-1" });
  const patchMs = Date.now() - t0;
  assert.equal(r.kind, "patched");
  if (r.kind !== "patched") return;
  assert.equal(r.adopted, false);
  assert.notEqual(r.patchedDigest, IMAGE.digest);
  // Read the pushed image back from the registry, independently of the engine.
  const pushed = await registry.manifestFor(target);
  assert.equal(pushed?.digest, r.patchedDigest);
  const db = await readPackageDB(registry, target, pushed!.manifest.layers);
  for (const u of updates)
    assert.equal(db.packages.get(u.name), u.fixedVersion, `${u.name} in the patched image`);
  assert.deepEqual(r.verification.fixed.map((u) => u.name).sort(), ["liblzma5", "libpcre2-8-0", "perl-base"]);
  assert.deepEqual(r.verification.remaining, []);
  process.stderr.write(`# real copa patch: ${patchMs} ms (copa ${r.copaMs} ms)\n`);

  // The same request against the patched image: every update is satisfied, so no copa run.
  const again = await patchImage({
    ...common,
    id: "engine-2",
    source: { ...target, digest: r.patchedDigest },
  });
  assert.equal(again.kind, "noop");

  // The same request again for the original source: the earlier push is adopted, not redone.
  const redelivered = await patchImage({ ...common, id: "engine-3" });
  assert.equal(redelivered.kind, "patched");
  if (redelivered.kind === "patched") {
    assert.equal(redelivered.adopted, true);
    assert.equal(redelivered.patchedDigest, r.patchedDigest);
  }
});

test("patch engine - copa's exit 0 with 'already up-to-date' is a no-op, not a success", async () => {
  // Bypass our planner: hand copa a manifest of updates the patched image already has.
  const target = parseImageRef(`${env.registryHost}/${REPO}:bookworm-vuln-patched`);
  const pushed = await registry.manifestFor(target);
  assert.ok(pushed, "runs after the patch test");
  const exec = localExecutor({ copaPath: goBinary("copa") });
  const { classifyCopaRun } = await import("../../src/patch/outcome.ts");
  const { copaArgv } = await import("../../src/patch/argv.ts");
  // A Trivy-format report with nothing fixable: copa says "already up-to-date" and exits 0.
  const run = await exec.run({
    id: "noop-probe",
    manifest: {
      apiVersion: "v1alpha1",
      metadata: { os: { type: "debian", version: "12" }, config: { arch: "amd64" } },
      updates: [],
    },
    timeoutMs: 300_000,
    args: (p) =>
      copaArgv({
        image: { ...target, digest: pushed!.digest },
        target: { ...target, tag: "noop-check" },
        buildkitAddr: env.buildkitAddr,
        manifestPath: p.manifest,
        timeout: "5m",
      }),
  });
  assert.equal(run.exitCode, 0, run.outputTail);
  assert.equal(classifyCopaRun(run).kind, "noop", run.outputTail);
  assert.equal(await registry.resolve({ ...target, tag: "noop-check" }), undefined, "nothing pushed");
});

test("patch engine - a missing source image fails with ImageNotFound before any copa run", async () => {
  await assert.rejects(
    patchImage({
      id: "missing",
      source: parseImageRef(`${env.registryHost}/library/nope:1`),
      target: parseImageRef(`${env.registryHost}/library/nope:1-patched`),
      updates,
      os: { type: "debian", version: "12" },
      buildkitAddr: env.buildkitAddr,
      executor: { kind: "local", run: () => assert.fail("copa must not run") },
      registry,
    }),
    (err: unknown) => err instanceof PatchError && err.reason === "ImageNotFound",
  );
});
