// Test images without internet: a Debian bookworm rootfs from `debootstrap
// --variant=minbase` of bookworm *main* only (older than bookworm-security, so it has
// real, fixable vulnerabilities), packed as an OCI image with umoci and cached; then
// pushed into an environment's registry with skopeo. The same image serves as the
// tooling image copa pulls for Debian (debian:12-slim and friends, via the mirrors).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, statSync } from "node:fs";
import { mkdir, rm, writeFile, rename, readFile } from "node:fs/promises";
import { join } from "node:path";
import { cacheDir, systemBinary } from "./tools.ts";

const run = promisify(execFile);

export const DEBIAN_MIRROR = process.env.DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
export const DEBIAN_SECURITY_MIRROR =
  process.env.DEBIAN_SECURITY_MIRROR ?? "http://deb.debian.org/debian-security";

/** Where the vulnerable image lands in every environment's registry. */
export const VULN_REPO = "library/debian";
export const VULN_TAG = "bookworm-vuln";

/** Tags copa may ask for as its Debian tooling image, under the registry mirrors of docker.io and ghcr.io. */
export const TOOLING_REFS = [
  "library/debian:12-slim",
  "library/debian:stable-slim",
  "project-copacetic/copacetic/debian:12-slim",
  "project-copacetic/copacetic/debian:stable-slim",
];

/** Run a tool (argv, no shell); its stdout, or an error ending with its last stderr lines. */
export async function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeout?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, {
      maxBuffer: 256 * 1024 * 1024,
      timeout: opts.timeout ?? 15 * 60_000,
      cwd: opts.cwd,
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(
      `${cmd} ${args.slice(0, 3).join(" ")} failed: ${(e.stderr ?? e.message).trim().split("\n").slice(-8).join("\n")}`,
      { cause: err },
    );
  }
}

function imagesDir(): string {
  return join(cacheDir(), "images");
}

/**
 * The cached OCI layout holding `bookworm-vuln` for one Debian architecture; built on
 * first use (amd64: debootstrap ~1 min). A foreign architecture (arm64) is bootstrapped
 * in two stages, the second running under QEMU (needs ensureEmulation first).
 */
export async function ensureDebianImage(arch = "amd64"): Promise<{ layout: string; tag: string }> {
  const native = arch === "amd64";
  const layout = join(imagesDir(), native ? "debian-oci" : `debian-${arch}-oci`);
  const marker = join(layout, ".complete");
  if (existsSync(marker)) return { layout, tag: VULN_TAG };
  await mkdir(imagesDir(), { recursive: true });
  // One builder at a time across processes (tests may start together).
  const lock = join(imagesDir(), native ? "debian.lock" : `debian-${arch}.lock`);
  await withLock(lock, async () => {
    if (existsSync(marker)) return;
    const work = join(imagesDir(), `work-${process.pid}`);
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    try {
      const rootfs = join(work, "rootfs");
      const debootstrap = systemBinary("debootstrap", "debootstrap");
      if (native)
        await sh(debootstrap, ["--variant=minbase", "bookworm", rootfs, DEBIAN_MIRROR], {
          timeout: 20 * 60_000,
        });
      else {
        await sh(
          debootstrap,
          ["--foreign", `--arch=${arch}`, "--variant=minbase", "bookworm", rootfs, DEBIAN_MIRROR],
          {
            timeout: 20 * 60_000,
          },
        );
        // The second stage runs the target's own binaries: QEMU through binfmt_misc.
        await sh("chroot", [rootfs, "/debootstrap/debootstrap", "--second-stage"], { timeout: 40 * 60_000 });
      }
      // Add the update suites without upgrading, so apt in the image (what copa runs) sees the fixes.
      await writeFile(
        join(rootfs, "etc/apt/sources.list"),
        [
          `deb ${DEBIAN_MIRROR} bookworm main`,
          `deb ${DEBIAN_MIRROR} bookworm-updates main`,
          `deb ${DEBIAN_SECURITY_MIRROR} bookworm-security main`,
          "",
        ].join("\n"),
      );
      await rm(join(rootfs, "var/lib/apt/lists"), { recursive: true, force: true });
      await mkdir(join(rootfs, "var/lib/apt/lists/partial"), { recursive: true });
      for (const f of ["pkgcache.bin", "srcpkgcache.bin"])
        await rm(join(rootfs, "var/cache/apt", f), { force: true });
      const oci = join(work, "oci");
      const umoci = systemBinary("umoci", "umoci");
      await sh(umoci, ["init", "--layout", oci]);
      await sh(umoci, ["new", "--image", `${oci}:${VULN_TAG}`]);
      const bundle = join(work, "bundle");
      await sh(umoci, ["unpack", "--image", `${oci}:${VULN_TAG}`, bundle]);
      await rm(join(bundle, "rootfs"), { recursive: true, force: true });
      await rename(rootfs, join(bundle, "rootfs"));
      await sh(umoci, ["repack", "--image", `${oci}:${VULN_TAG}`, bundle]);
      await sh(umoci, [
        "config",
        "--image",
        `${oci}:${VULN_TAG}`,
        "--config.cmd",
        "/bin/bash",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--architecture",
        arch,
        "--os",
        "linux",
      ]);
      await sh(umoci, ["gc", "--layout", oci]);
      await writeFile(join(oci, ".complete"), new Date().toISOString() + "\n");
      await rm(layout, { recursive: true, force: true });
      await rename(oci, layout);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
  return { layout, tag: VULN_TAG };
}

/** A lock across processes: mkdir is atomic. A lock older than 30 minutes is a crashed builder's. */
async function withLock(path: string, fn: () => Promise<void>): Promise<void> {
  const dirLock = `${path}.d`;
  for (;;) {
    try {
      await mkdir(dirLock);
      break;
    } catch {
      try {
        if (Date.now() - statSync(dirLock).mtimeMs > 30 * 60_000)
          await rm(dirLock, { recursive: true, force: true });
      } catch {
        /* released meanwhile */
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    await fn();
  } finally {
    await rm(dirLock, { recursive: true, force: true });
  }
}

/** Copy an OCI layout tag into a registry (plain HTTP) under each of `refs`. Returns the pushed manifest digest. */
export async function pushLayout(
  layout: string,
  tag: string,
  registry: string,
  refs: string[],
  authfile?: string,
): Promise<string> {
  return pushOCI(`oci:${layout}:${tag}`, join(layout, ".."), registry, refs, authfile);
}

/** Push an image from skopeo's `source` (an OCI layout or archive); the digest of the last push. */
export async function pushOCI(
  source: string,
  scratchDir: string,
  registry: string,
  refs: string[],
  authfile?: string,
): Promise<string> {
  const skopeo = systemBinary("skopeo", "skopeo");
  let digest = "";
  for (const ref of refs) {
    const digestFile = join(scratchDir, `.digest-${process.pid}-${Math.random().toString(36).slice(2)}`);
    await sh(skopeo, [
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      ...(authfile ? ["--dest-authfile", authfile] : []),
      "--digestfile",
      digestFile,
      source,
      `docker://${registry}/${ref}`,
    ]);
    digest = (await readFile(digestFile, "utf8")).trim();
    await rm(digestFile, { force: true });
  }
  return digest;
}

export interface SeededImages {
  /** registry/library/debian:bookworm-vuln */
  vulnerable: string;
  vulnerableDigest: string;
}

/** Push only the vulnerable image, with credentials from a docker config file (the registry with auth). */
export async function seedVulnerable(registry: string, authfile?: string): Promise<SeededImages> {
  const { layout, tag } = await ensureDebianImage();
  const vulnerableDigest = await pushLayout(layout, tag, registry, [`${VULN_REPO}:${VULN_TAG}`], authfile);
  return { vulnerable: `${registry}/${VULN_REPO}:${VULN_TAG}`, vulnerableDigest };
}

/** Push the vulnerable image and the tooling tags into `registry`. */
export async function seedRegistry(registry: string): Promise<SeededImages> {
  const { layout, tag } = await ensureDebianImage();
  const vulnerableDigest = await pushLayout(layout, tag, registry, [`${VULN_REPO}:${VULN_TAG}`]);
  await pushLayout(layout, tag, registry, TOOLING_REFS);
  return { vulnerable: `${registry}/${VULN_REPO}:${VULN_TAG}`, vulnerableDigest };
}

export interface PlatformImage {
  os: string;
  architecture: string;
  variant?: string;
  digest: string;
}

export interface SeededIndex {
  /** registry/repo:tag of the index */
  ref: string;
  digest: string;
  platforms: PlatformImage[];
}

/**
 * Push one OCI layout per platform and an OCI image index over them, as `repo:tag`.
 * Each platform's manifest also gets the tag `<tag>-<arch>` (skopeo pushes by tag).
 */
export async function pushIndex(
  registry: string,
  repo: string,
  tag: string,
  images: Array<{ layout: string; layoutTag: string; os: string; architecture: string; variant?: string }>,
): Promise<SeededIndex> {
  const base = `http://${registry}/v2/${repo}`;
  const manifests: Array<Record<string, unknown>> = [];
  const platforms: PlatformImage[] = [];
  for (const img of images) {
    const digest = await pushLayout(img.layout, img.layoutTag, registry, [
      `${repo}:${tag}-${img.architecture}`,
    ]);
    const res = await fetch(`${base}/manifests/${digest}`, {
      headers: {
        accept:
          "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
      },
    });
    if (res.status !== 200) throw new Error(`${repo}@${digest}: ${res.status}`);
    const body = Buffer.from(await res.arrayBuffer());
    const platform = {
      os: img.os,
      architecture: img.architecture,
      ...(img.variant ? { variant: img.variant } : {}),
    };
    manifests.push({ mediaType: res.headers.get("content-type"), digest, size: body.length, platform });
    platforms.push({ ...platform, digest });
  }
  const index = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests }),
  );
  const put = await fetch(`${base}/manifests/${tag}`, {
    method: "PUT",
    body: new Uint8Array(index),
    headers: { "content-type": "application/vnd.oci.image.index.v1+json" },
  });
  if (put.status !== 201) throw new Error(`index ${repo}:${tag}: ${put.status} ${await put.text()}`);
  const digest = put.headers.get("docker-content-digest") ?? "";
  return { ref: `${registry}/${repo}:${tag}`, digest, platforms };
}

export const MULTI_TAG = "bookworm-vuln-multi";

/**
 * The two-platform vulnerable index (linux/amd64 + linux/arm64) as `library/debian:bookworm-vuln-multi`,
 * and the tooling tags as indexes too, so copa finds its Debian tooling image for either platform.
 * Needs QEMU emulation for the arm64 rootfs (ensureEmulation).
 */
export async function seedMultiArch(registry: string): Promise<SeededIndex> {
  const amd64 = await ensureDebianImage("amd64");
  const arm64 = await ensureDebianImage("arm64");
  const both = [
    { layout: amd64.layout, layoutTag: amd64.tag, os: "linux", architecture: "amd64" },
    { layout: arm64.layout, layoutTag: arm64.tag, os: "linux", architecture: "arm64" },
  ];
  const index = await pushIndex(registry, VULN_REPO, MULTI_TAG, both);
  for (const ref of TOOLING_REFS) {
    const [repo, tag] = ref.split(":") as [string, string];
    await pushIndex(registry, repo, tag, both);
  }
  return index;
}
