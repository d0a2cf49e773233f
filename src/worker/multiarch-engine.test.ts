// The multi-arch patch engine (patchIndex) on a real two-platform index: copa in its
// report-directory mode on BuildKit, arm64 under QEMU user emulation, the registry read
// back platform by platform. Real copa, BuildKit, registry and emulation; nothing simulated.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setup, goBinary, type Env } from "../../test/env/index.ts";
import { securityPackages } from "../../test/env/debian.ts";
import { parseImageRef, type ImageRef } from "../api/imageref.ts";
import type { PackageUpdate } from "../api/patchjob.ts";
import { RegistryClient, isIndex } from "../registry/client.ts";
import { readPackageDB } from "../registry/pkgdb.ts";
import { localExecutor } from "../patch/local.ts";
import { patchIndex, type PatchIndexInput } from "./patch-index.ts";

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

/** The report's updates for one platform: installed versions read from that platform's image. */
async function updatesFor(arch: string, override?: Record<string, string>): Promise<PackageUpdate[]> {
  const ref = parseImageRef(env.multiArch!.ref);
  const m = await registry.manifestFor(ref, `linux/${arch}`);
  const db = await readPackageDB(registry, ref, m!.manifest.layers);
  return NAMES.map((name) => ({
    name,
    installedVersion: db.packages.get(name)!,
    fixedVersion: override?.[name] ?? fixes.get(name)!,
    vulnerabilityIDs: [`TEST-${name}`],
  }));
}

function input(tag: string, platforms: PatchIndexInput["platforms"], extra: Partial<PatchIndexInput> = {}) {
  const idx = env.multiArch!;
  return {
    id: `multi-${tag}`,
    source: { ...parseImageRef(idx.ref), digest: idx.digest },
    target: parseImageRef(`${env.registryHost}/library/debian:${tag}`),
    platforms,
    os: { type: "debian", version: "12" },
    buildkitAddr: env.buildkitAddr,
    timeout: "20m",
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry,
    ...extra,
  } satisfies PatchIndexInput;
}

async function platformsOf(ref: ImageRef): Promise<Map<string, string>> {
  const r = await registry.resolve(ref);
  assert.ok(r && isIndex(r.body), `${ref.tag} is an index`);
  return new Map(
    r.body.manifests
      .filter((m) => m.platform?.os !== "unknown")
      .map((m) => [`${m.platform!.os}/${m.platform!.architecture}`, m.digest]),
  );
}

test("multi-arch engine - two reports: one patched index with the source's platforms, each platform's dpkg status fixed", async () => {
  const idx = env.multiArch!;
  const t0 = performance.now();
  const r = await patchIndex(
    input("multi-both", [
      { platform: "linux/amd64", updates: await updatesFor("amd64") },
      { platform: "linux/arm64", updates: await updatesFor("arm64") },
    ]),
  );
  const ms = performance.now() - t0;
  assert.equal(r.kind, "patched", r.message);
  assert.equal(r.adopted, false);
  const ref = parseImageRef(`${env.registryHost}/library/debian:multi-both`);
  const published = await platformsOf(ref);
  assert.deepEqual([...published.keys()].sort(), ["linux/amd64", "linux/arm64"]);
  assert.equal((await registry.resolve(ref))!.digest, r.indexDigest, "the tag holds the index reported");
  for (const p of idx.platforms) {
    const key = `linux/${p.architecture}`;
    const o = r.platforms.find((x) => x.platform === key)!;
    assert.equal(o.result, "Patched", `${key}: ${o.message}`);
    assert.equal(o.digest, published.get(key), `${key} digest as published`);
    assert.notEqual(o.digest, p.digest, `${key} is a new manifest`);
    const m = await registry.manifestFor(ref, key);
    const db = await readPackageDB(registry, ref, m!.manifest.layers);
    for (const [name, version] of fixes) assert.equal(db.packages.get(name), version, `${key} ${name}`);
  }
  process.stderr.write(
    `# patchIndex, two platforms (amd64 native + arm64 under QEMU): ${(ms / 1000).toFixed(1)} s, copa ${((r.copaMs ?? 0) / 1000).toFixed(1)} s\n`,
  );

  // The same request again (a redelivery): the published index is adopted, copa does not run.
  const again = await patchIndex(
    input("multi-both", [
      { platform: "linux/amd64", updates: await updatesFor("amd64") },
      { platform: "linux/arm64", updates: await updatesFor("arm64") },
    ]),
  );
  assert.equal(again.adopted, true);
  assert.equal(again.indexDigest, r.indexDigest);
});

test("multi-arch engine - a report for amd64 only: arm64 keeps its original manifest digest", async () => {
  const idx = env.multiArch!;
  const r = await patchIndex(
    input("multi-amd64-only", [{ platform: "linux/amd64", updates: await updatesFor("amd64") }]),
  );
  assert.equal(r.kind, "patched", r.message);
  const published = await platformsOf(parseImageRef(`${env.registryHost}/library/debian:multi-amd64-only`));
  assert.notEqual(published.get("linux/amd64"), idx.platforms[0]!.digest, "amd64 patched");
  assert.equal(published.get("linux/arm64"), idx.platforms[1]!.digest, "arm64: the source's manifest");
  assert.equal(r.platforms.find((p) => p.platform === "linux/arm64")?.result, "Unchanged");
});

test("multi-arch engine - one platform fails: no index under the tag; with publishPartial, the others' original manifests", async () => {
  const idx = env.multiArch!;
  // arm64's report asks for a liblzma5 that does not exist: copa fails that platform only.
  const platforms = [
    { platform: "linux/amd64", updates: await updatesFor("amd64") },
    { platform: "linux/arm64", updates: await updatesFor("arm64", { liblzma5: "99.0-1" }) },
  ];
  const r = await patchIndex(input("multi-fail", platforms));
  assert.equal(r.kind, "failed", r.message);
  const byPlatform = new Map(r.platforms.map((p) => [p.platform, p]));
  assert.equal(byPlatform.get("linux/arm64")?.result, "Failed", byPlatform.get("linux/arm64")?.message);
  assert.ok(byPlatform.get("linux/arm64")?.reason, "the failed platform has a reason");
  assert.equal(byPlatform.get("linux/amd64")?.result, "NotPublished");
  assert.match(r.message, /linux\/arm64 failed/);
  const target = parseImageRef(`${env.registryHost}/library/debian:multi-fail`);
  assert.equal(await registry.resolve(target), undefined, "nothing under the tag");

  // The same patch with publishPartial: amd64 patched, arm64 its original manifest.
  const partial = await patchIndex(input("multi-partial", platforms, { publishPartial: true }));
  assert.equal(partial.kind, "patched", partial.message);
  const published = await platformsOf(parseImageRef(`${env.registryHost}/library/debian:multi-partial`));
  assert.deepEqual([...published.keys()].sort(), ["linux/amd64", "linux/arm64"]);
  assert.equal(published.get("linux/arm64"), idx.platforms[1]!.digest, "arm64 unchanged");
  assert.notEqual(published.get("linux/amd64"), idx.platforms[0]!.digest, "amd64 patched");
  assert.equal(partial.platforms.find((p) => p.platform === "linux/arm64")?.result, "Failed");
});
