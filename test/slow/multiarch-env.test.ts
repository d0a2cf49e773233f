// The multi-arch environment: QEMU user emulation registered in binfmt_misc, a
// two-platform vulnerable index built from two debootstrap rootfs (arm64's second
// stage runs under emulation), and BuildKit running an arm64 build step. What the
// multi-arch patching builds on; everything here is real (no simulation).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { setup, goBinary } from "../../src/devenv/index.ts";
import { readPackageDB, RegistryClient } from "../../src/registry/index.ts";
import { parseImageRef } from "../../src/api/index.ts";

const run = promisify(execFile);

test("env - multi-arch: a linux/amd64 + linux/arm64 vulnerable index, and BuildKit runs arm64 steps under QEMU; binfmt undone on stop", async () => {
  const registeredBefore = existsSync("/proc/sys/fs/binfmt_misc/qemu-aarch64");
  const t0 = performance.now();
  const env = await setup({ buildkit: true, multiArch: true });
  const upMs = performance.now() - t0;
  try {
    const idx = env.multiArch!;
    assert.deepEqual(
      idx.platforms.map((p) => `${p.os}/${p.architecture}`),
      ["linux/amd64", "linux/arm64"],
    );
    const registry = new RegistryClient();
    const ref = parseImageRef(idx.ref);
    for (const p of idx.platforms) {
      const m = await registry.manifestFor(ref, `${p.os}/${p.architecture}`);
      assert.equal(m?.digest, p.digest, `${p.architecture}: the index resolves to its manifest`);
      assert.equal(m?.indexDigest, idx.digest);
      const db = await readPackageDB(registry, ref, m!.manifest.layers);
      assert.equal(
        db.packages.get("liblzma5"),
        "5.4.1-1+deb12u1",
        `${p.architecture}: bookworm main's liblzma5, vulnerable`,
      );
    }
    assert.notEqual(idx.platforms[0]!.digest, idx.platforms[1]!.digest);

    // BuildKit runs an arm64 step (the way copa's apt runs on an arm64 platform).
    const workers = (
      await run(goBinary("buildctl"), ["--addr", env.buildkitAddr, "debug", "workers", "--verbose"])
    ).stdout;
    assert.match(workers, /linux\/arm64/, "BuildKit offers linux/arm64");
    const ctx = await mkdtemp(join(tmpdir(), "arm64-step-"));
    try {
      await writeFile(
        join(ctx, "Dockerfile"),
        `FROM ${env.registryHost}/library/debian:12-slim\nRUN uname -m > /arch && dpkg --print-architecture >> /arch\nFROM scratch\nCOPY --from=0 /arch /arch\n`,
      );
      const t1 = performance.now();
      await run(goBinary("buildctl"), [
        "--addr",
        env.buildkitAddr,
        "build",
        "--frontend",
        "dockerfile.v0",
        "--local",
        `context=${ctx}`,
        "--local",
        `dockerfile=${ctx}`,
        "--opt",
        "platform=linux/arm64",
        "--output",
        `type=local,dest=${join(ctx, "out")}`,
      ]);
      const out = await readFile(join(ctx, "out", "arch"), "utf8");
      assert.equal(out, "aarch64\narm64\n");
      process.stderr.write(
        `# multi-arch env up in ${(upMs / 1000).toFixed(1)} s; an arm64 RUN step under QEMU in ${((performance.now() - t1) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      await rm(ctx, { recursive: true, force: true });
    }
  } finally {
    await env.stop();
  }
  assert.equal(
    existsSync("/proc/sys/fs/binfmt_misc/qemu-aarch64"),
    registeredBefore,
    "the binfmt registration is back as it was",
  );
});
