// The images the chart runs, built without a Docker engine: BuildKit's built-in
// Dockerfile frontend (no frontend image to pull) builds the repository's Dockerfiles
// and pushes to the environment's registry.
//
// Base images come from the environment, served through the registry mirrors of
// docker.io and gcr.io: the Debian rootfs of the test images (as debian:bookworm-slim),
// the same plus Node 24 from the `node` npm package (as node:24-bookworm-slim), and a
// distroless-like static base (passwd/group with nonroot 65532, /tmp). Two stages of the
// Dockerfiles need a toolchain image that is not here (golang) or npm in the Node image;
// the environment supplies them as named contexts, the way `--build-context` does: the
// `copa` and `buildkit` stages from the Go-built binaries of the cache, the `build` stage
// from this checkout compiled by tsc with its production dependencies installed offline
// from npm's cache. Every other step of each Dockerfile runs as written (the runtime
// stages' apt-get included, on the host's network like the tests' copa runs).
import { execFile } from "node:child_process";
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { promisify } from "node:util";
import { cacheDir, goBinary, REPO_ROOT, systemBinary } from "./tools.ts";
import { ensureDebianImage, pushLayout, sh } from "./images.ts";

const run = promisify(execFile);

export interface ClusterImages {
  /** The vuln-patcher image (controller, worker), repository and tag. */
  vulnPatcher: { repository: string; tag: string };
  copaRunner: { repository: string; tag: string };
  buildkit: string;
  /** Seconds per image build (BuildKit's cache state as it was). */
  seconds: Record<string, number>;
}

/** An OCI layout in the cache made from the Debian layout plus files, built once (keyed by `key`). */
export async function derivedLayout(
  name: string,
  key: string,
  from: { layout: string; tag: string } | undefined,
  addFiles: (rootfs: string) => Promise<void>,
  config: string[],
): Promise<{ layout: string; tag: string }> {
  const layout = join(cacheDir(), "images", `${name}-${key}`);
  if (existsSync(join(layout, ".complete"))) return { layout, tag: "latest" };
  const umoci = systemBinary("umoci", "umoci");
  const work = `${layout}.work-${process.pid}`;
  await rm(work, { recursive: true, force: true });
  try {
    if (from) {
      await cp(from.layout, join(work, "oci"), { recursive: true });
      await sh(umoci, ["tag", "--image", `${join(work, "oci")}:${from.tag}`, "latest"]);
    } else {
      await sh(umoci, ["init", "--layout", join(work, "oci")]);
      await sh(umoci, ["new", "--image", `${join(work, "oci")}:latest`]);
    }
    const image = `${join(work, "oci")}:latest`;
    await sh(umoci, ["unpack", "--image", image, join(work, "bundle")]);
    await addFiles(join(work, "bundle", "rootfs"));
    await sh(umoci, ["repack", "--image", image, join(work, "bundle")]);
    await sh(umoci, ["config", "--image", image, ...config]);
    await sh(umoci, ["gc", "--layout", join(work, "oci")]);
    await writeFile(join(work, "oci", ".complete"), new Date().toISOString() + "\n");
    await rm(layout, { recursive: true, force: true });
    await rename(join(work, "oci"), layout);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { layout, tag: "latest" };
}

/** The Debian layout plus Node.js from the `node` npm package (node:24-bookworm-slim). */
export async function nodeLayout(): Promise<{ layout: string; tag: string; nodeVersion: string }> {
  const debian = await ensureDebianImage();
  const nodeBin = realpathSync(join(REPO_ROOT, "node_modules", "node", "bin", "node"));
  const nodeVersion = JSON.parse(
    await readFile(join(REPO_ROOT, "node_modules", "node", "package.json"), "utf8"),
  ).version as string;
  const node = await derivedLayout(
    "node",
    nodeVersion,
    debian,
    async (rootfs) => {
      await copyFile(nodeBin, join(rootfs, "usr/local/bin/node"));
      await chmod(join(rootfs, "usr/local/bin/node"), 0o755);
    },
    ["--config.cmd", "node", "--config.env", `NODE_VERSION=${nodeVersion}`],
  );
  return { ...node, nodeVersion };
}

/** Push the base images the Dockerfiles name, under the mirrors' paths. */
export async function pushBaseImages(registry: string): Promise<void> {
  const debian = await ensureDebianImage();
  const node = await nodeLayout();
  const staticBase = await derivedLayout(
    "static-nonroot",
    "1",
    undefined,
    async (rootfs) => {
      for (const d of ["etc", "tmp", "home/nonroot"]) await mkdir(join(rootfs, d), { recursive: true });
      await chmod(join(rootfs, "tmp"), 0o1777);
      await writeFile(
        join(rootfs, "etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
      );
      await writeFile(join(rootfs, "etc/group"), "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n");
    },
    ["--config.user", "65532:65532", "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin"],
  );
  await pushLayout(debian.layout, debian.tag, registry, ["library/debian:bookworm-slim"]);
  await pushLayout(node.layout, node.tag, registry, ["library/node:24-bookworm-slim"]);
  await pushLayout(staticBase.layout, staticBase.tag, registry, ["distroless/static-debian12:nonroot"]);
}

/** The `build` stage's output for this checkout: package.json, production node_modules, dist. */
async function buildStageContext(dir: string): Promise<string> {
  const ctx = join(dir, "build");
  const src = join(ctx, "src");
  await rm(ctx, { recursive: true, force: true });
  await mkdir(src, { recursive: true });
  const lock = await readFile(join(REPO_ROOT, "package-lock.json"));
  const key = createHash("sha256").update(lock).digest("hex").slice(0, 16);
  const deps = join(cacheDir(), "images", `prod-deps-${key}`);
  if (!existsSync(join(deps, ".complete"))) {
    const work = `${deps}.work-${process.pid}`;
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    await copyFile(join(REPO_ROOT, "package.json"), join(work, "package.json"));
    await copyFile(join(REPO_ROOT, "package-lock.json"), join(work, "package-lock.json"));
    // From npm's cache only (the checkout's own `npm ci` filled it): nothing is fetched.
    await sh("npm", ["ci", "--omit=dev", "--ignore-scripts", "--offline", "--no-audit", "--no-fund"], {
      cwd: work,
    });
    await writeFile(join(work, ".complete"), "");
    await rm(deps, { recursive: true, force: true });
    await rename(work, deps);
  }
  await cp(join(deps, "node_modules"), join(src, "node_modules"), {
    recursive: true,
    verbatimSymlinks: true,
  });
  await copyFile(join(REPO_ROOT, "package.json"), join(src, "package.json"));
  // The checkout's own build when it is newer than every source file (`npm test` builds
  // first); otherwise compile here.
  const built = join(REPO_ROOT, "dist", "src", "cli", "main.js");
  const sources = ["src", "charts/vuln-patcher/crds", "tsconfig.json", "tsconfig.build.json"];
  if (existsSync(built) && statSync(built).mtimeMs > newestMtime(sources.map((d) => join(REPO_ROOT, d))))
    await cp(join(REPO_ROOT, "dist"), join(src, "dist"), { recursive: true });
  else
    await sh(
      join(REPO_ROOT, "node_modules", ".bin", "tsc"),
      ["-p", "tsconfig.build.json", "--outDir", join(src, "dist")],
      { cwd: REPO_ROOT },
    );
  return ctx;
}

/** The newest modification time of the files under `paths`. */
function newestMtime(paths: string[]): number {
  let newest = 0;
  const walk = (p: string): void => {
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else newest = Math.max(newest, st.mtimeMs);
  };
  for (const p of paths) walk(p);
  return newest;
}

/** buildctl build of one Dockerfile of the repository; resolves the pushed digest. */
export async function buildDockerfile(o: {
  buildkitAddr: string;
  dockerfile: string;
  ref: string;
  /** Named contexts: stage name -> local directory that replaces it. */
  contexts: Record<string, string>;
  /** Where buildctl writes its metadata file. */
  metaDir: string;
  /** A BuildKit cache kept across environments (imported, then exported again). */
  cacheDir?: string;
  /** buildctl's --output. @default push `ref` to its registry */
  output?: string;
}): Promise<string> {
  const meta = join(o.metaDir, `metadata-${Date.now()}.json`);
  const args = [
    "--addr",
    o.buildkitAddr,
    "build",
    "--progress=plain",
    "--frontend",
    "dockerfile.v0",
    "--local",
    `context=${REPO_ROOT}`,
    "--local",
    `dockerfile=${REPO_ROOT}`,
    "--opt",
    `filename=${o.dockerfile}`,
    "--output",
    o.output ?? `type=image,name=${o.ref},push=true`,
    "--metadata-file",
    meta,
  ];
  if (o.cacheDir) {
    const cache = join(o.cacheDir, o.dockerfile);
    if (existsSync(join(cache, "index.json"))) args.push("--import-cache", `type=local,src=${cache}`);
    args.push("--export-cache", `type=local,dest=${cache},mode=max`);
  }
  for (const [name, path] of Object.entries(o.contexts)) {
    args.push("--opt", `context:${name}=local:${name}`, "--local", `${name}=${path}`);
  }
  // BuildKit's progress goes to a log beside the metadata (what was cached, what ran).
  const log = join(o.metaDir, `${basename(o.dockerfile)}.log`);
  try {
    const { stderr } = await run(goBinary("buildctl"), args, {
      timeout: 20 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    await writeFile(log, stderr);
  } catch (err) {
    const e = err as Error & { stderr?: string };
    await writeFile(log, e.stderr ?? e.message);
    const tail = (e.stderr ?? e.message).trim().split("\n").slice(-15).join("\n");
    throw new Error(`buildctl build of ${o.dockerfile} failed (log: ${log}): ${tail}`, { cause: err });
  }
  const digest = (JSON.parse(await readFile(meta, "utf8")) as Record<string, string>)[
    "containerimage.digest"
  ];
  await rm(meta, { force: true });
  if (!digest) throw new Error(`buildctl pushed ${o.ref} without a digest`);
  return digest;
}

/**
 * Build and push vuln-patcher's image, the copa runner and BuildKit from the repository's
 * Dockerfiles. `dir` holds the named contexts. The registry must be BuildKit's mirror of
 * docker.io and gcr.io (the environment's buildkitd is configured so).
 */
export async function buildClusterImages(o: {
  dir: string;
  registry: string;
  buildkitAddr: string;
  tag?: string;
  /**
   * Keep BuildKit's cache for these builds here, across environments (each environment's
   * BuildKit starts empty). Without it every build in a new environment is cold.
   */
  cacheDir?: string;
}): Promise<ClusterImages> {
  const tag = o.tag ?? "dev";
  const ctx = join(o.dir, "image-contexts");
  await mkdir(join(ctx, "copa", "out"), { recursive: true });
  await mkdir(join(ctx, "buildkit", "out"), { recursive: true });
  await copyFile(goBinary("copa"), join(ctx, "copa", "out", "copa"));
  await copyFile(goBinary("cosign"), join(ctx, "copa", "out", "cosign"));
  for (const b of ["buildkitd", "buildctl"]) await copyFile(goBinary(b), join(ctx, "buildkit", "out", b));
  const t0 = Date.now();
  await pushBaseImages(o.registry);
  const build = await buildStageContext(ctx);
  const seconds: Record<string, number> = { "base images + build context": (Date.now() - t0) / 1000 };
  const timed = async (name: string, f: () => Promise<string>) => {
    const t = Date.now();
    await f();
    seconds[name] = (Date.now() - t) / 1000;
  };
  const repo = (n: string) => `${o.registry}/vuln-patcher/${n}`;
  const image = (name: string, dockerfile: string, contexts: Record<string, string>) =>
    timed(name, () =>
      buildDockerfile({
        buildkitAddr: o.buildkitAddr,
        dockerfile,
        ref: `${repo(name)}:${tag}`,
        metaDir: ctx,
        cacheDir: o.cacheDir,
        contexts,
      }),
    );
  await image("vuln-patcher", "Dockerfile", { copa: join(ctx, "copa"), build });
  await image("copa-runner", "Dockerfile.copa", { copa: join(ctx, "copa") });
  await image("buildkit", "Dockerfile.buildkit", { buildkit: join(ctx, "buildkit") });
  return {
    vulnPatcher: { repository: repo("vuln-patcher"), tag },
    copaRunner: { repository: repo("copa-runner"), tag },
    buildkit: `${repo("buildkit")}:${tag}`,
    seconds,
  };
}
