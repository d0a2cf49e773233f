// The patch engine on a multi-arch index, as the multi-arch worker path will drive it:
// copa with a *directory* of native manifests (one per platform, config.arch telling
// them apart), on BuildKit with QEMU for arm64, pushing `<tag>-patched` as one index.
// Real copa, BuildKit, registry and emulation; nothing simulated.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { setup, goBinary, type Env } from "../../test/env/index.ts";
import { securityPackages } from "../../test/env/debian.ts";
import { parseImageRef, formatImageRef } from "../api/imageref.ts";
import { toUpdateManifest } from "../api/convert.ts";
import { RegistryClient } from "../registry/client.ts";
import { readPackageDB } from "../registry/pkgdb.ts";
import { copaArgv } from "../patch/argv.ts";

const run = promisify(execFile);
const NAMES = ["liblzma5", "libpcre2-8-0", "perl-base"];

let env: Env;
const registry = new RegistryClient();
let fixes: Map<string, string>;

before(async () => {
  env = await setup({ kube: false, nats: false, buildkit: true, multiArch: true });
  const sec = await securityPackages();
  fixes = new Map(NAMES.map((n) => [n, sec.get(n)!.version]));
});

after(async () => {
  await env?.stop();
});

interface IndexManifest {
  manifests: Array<{ digest: string; platform?: { os: string; architecture: string } }>;
}

async function readIndex(ref: string): Promise<IndexManifest> {
  const r = parseImageRef(ref);
  const res = await fetch(`http://${r.registry}/v2/${r.repository}/manifests/${r.tag}`, {
    headers: {
      accept:
        "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json",
    },
  });
  assert.equal(res.status, 200, `${ref}: ${res.status}`);
  return (await res.json()) as IndexManifest;
}

/** Write one native manifest per platform into a directory, and run copa on the index. */
async function copaOnIndex(platforms: string[], tag: string): Promise<{ ms: number; out: string }> {
  const idx = env.multiArch!;
  const dir = await mkdtemp(join(tmpdir(), "reports-"));
  try {
    for (const arch of platforms) {
      const ref = parseImageRef(idx.ref);
      const m = await registry.manifestFor(ref, `linux/${arch}`);
      const db = await readPackageDB(registry, ref, m!.manifest.layers);
      const updates = NAMES.map((name) => ({
        name,
        installedVersion: db.packages.get(name)!,
        fixedVersion: fixes.get(name)!,
        vulnerabilityID: `TEST-${name}`,
      }));
      const manifest = toUpdateManifest({
        os: { type: "debian", version: "12", scheme: "dpkg" },
        arch,
        updates,
      });
      await writeFile(join(dir, `${arch}.json`), JSON.stringify(manifest));
    }
    const argv = copaArgv({
      image: parseImageRef(idx.ref),
      target: parseImageRef(`${env.registryHost}/library/debian:${tag}`),
      buildkitAddr: env.buildkitAddr,
      manifestPath: dir,
      timeout: "20m",
    });
    const t0 = performance.now();
    const { stdout, stderr } = await run(goBinary("copa"), argv, {
      maxBuffer: 64 * 1024 * 1024,
      timeout: 25 * 60_000,
    });
    return { ms: performance.now() - t0, out: stdout + stderr };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("multi-arch engine - reports for both platforms: one patched index, same platforms, each platform's dpkg status fixed", async () => {
  const idx = env.multiArch!;
  const { ms, out } = await copaOnIndex(["amd64", "arm64"], "multi-both");
  const patched = await readIndex(`${env.registryHost}/library/debian:multi-both`);
  const platforms = (i: IndexManifest) =>
    i.manifests
      .filter((m) => m.platform?.architecture !== "unknown")
      .map((m) => `${m.platform?.os}/${m.platform?.architecture}`)
      .sort();
  assert.deepEqual(platforms(patched), ["linux/amd64", "linux/arm64"], out.slice(-2000));
  const ref = parseImageRef(`${env.registryHost}/library/debian:multi-both`);
  for (const p of idx.platforms) {
    const m = await registry.manifestFor(ref, `linux/${p.architecture}`);
    assert.ok(m, `${p.architecture} in the patched index`);
    assert.notEqual(m.digest, p.digest, `${p.architecture} was patched (a new manifest)`);
    const db = await readPackageDB(registry, ref, m.manifest.layers);
    for (const [name, version] of fixes)
      assert.equal(db.packages.get(name), version, `${p.architecture} ${name}`);
  }
  process.stderr.write(
    `# copa on the two-platform index (amd64 native + arm64 under QEMU): ${(ms / 1000).toFixed(1)} s\n`,
  );
});

test("multi-arch engine - a report for amd64 only: arm64 keeps its original manifest digest in the patched index", async () => {
  const idx = env.multiArch!;
  const { ms, out } = await copaOnIndex(["amd64"], "multi-amd64-only");
  const ref = parseImageRef(`${env.registryHost}/library/debian:multi-amd64-only`);
  const amd = await registry.manifestFor(ref, "linux/amd64");
  const arm = await registry.manifestFor(ref, "linux/arm64");
  assert.ok(amd && arm, out.slice(-2000));
  assert.notEqual(amd.digest, idx.platforms[0]!.digest, "amd64 patched");
  assert.equal(arm.digest, idx.platforms[1]!.digest, "arm64 untouched: the source's manifest");
  process.stderr.write(
    `# copa on the index with an amd64 report only (no emulation): ${(ms / 1000).toFixed(1)} s (${formatImageRef(ref)})\n`,
  );
});
