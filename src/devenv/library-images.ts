// Application images with language libraries at versions with known CVEs, for the real
// library patches (issue 25): Python (urllib3 1.26.4 in Debian's python3) and Node.js
// (minimist 1.2.5 in an app's node_modules, on the Node 24 base with npm). Each is built
// once per machine and kept in the cache as an OCI layout or archive; an environment
// gets a push of it. Both trust the host's CA bundle (NOTES.md: the registries are
// reached through it), which copa's pip and node runs inside the image need.
import { existsSync } from "node:fs";
import { copyFile, cp, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildDockerfile, derivedLayout, nodeLayout } from "./cluster-images.ts";
import { pushLayout, pushOCI, sh } from "./images.ts";
import { cacheDir, REPO_ROOT } from "./tools.ts";
import { testRegistryClient } from "./registry.ts";
import { honestReportForImage } from "./honest-report.ts";
import { parseImageRef } from "../api/index.ts";

const HOST_CA = "/etc/ssl/certs/ca-certificates.crt";
const NPM_DIR = "/usr/lib/node_modules/npm";
const PYTHON_DOCKERFILE = "src/devenv/library-images/python.Dockerfile";

/** The Node.js app's vulnerable dependency (CVE-2021-44906, fixed in 1.2.6). */
export const NODE_APP = { name: "minimist", version: "1.2.5", dir: "app" } as const;
/** The Python image's vulnerable library (CVE-2021-33503 fixed in 1.26.5, and later ones). */
export const PYTHON_APP = {
  name: "urllib3",
  version: "1.26.4",
  sitePackages: "usr/local/lib/python3.11/dist-packages",
} as const;

/** Push the Node.js app image to `registry/ref`; its digest. */
export async function pushNodeAppImage(registry: string, ref: string): Promise<string> {
  const node = await nodeLayout();
  const npmVersion = (
    JSON.parse(await readFile(join(NPM_DIR, "package.json"), "utf8")) as { version: string }
  ).version;
  const app = await derivedLayout(
    "node-app",
    `${node.nodeVersion}-npm${npmVersion}-${NODE_APP.name}-caret${NODE_APP.version}`,
    node,
    async (rootfs) => {
      // npm beside node: copa updates an app's packages with the image's own npm and node.
      await cp(NPM_DIR, join(rootfs, "usr/local/lib/node_modules/npm"), { recursive: true });
      await symlink("../lib/node_modules/npm/bin/npm-cli.js", join(rootfs, "usr/local/bin/npm"));
      await mkdir(join(rootfs, "etc/ssl/certs"), { recursive: true });
      await copyFile(HOST_CA, join(rootfs, "etc/ssl/certs/host-ca.crt"));
      const dir = join(rootfs, NODE_APP.dir);
      await mkdir(dir, { recursive: true });
      // A caret range, as `npm install` writes it: copa's `npm prune` after its update
      // puts an exactly pinned version back (seen: minimist 1.2.6 -> 1.2.5 with "1.2.5").
      await writeFile(
        join(dir, "package.json"),
        JSON.stringify({
          name: "app",
          version: "1.0.0",
          dependencies: { [NODE_APP.name]: `^${NODE_APP.version}` },
        }),
      );
      await writeFile(
        join(dir, "index.js"),
        `console.log(require("${NODE_APP.name}")(process.argv.slice(2)));\n`,
      );
      // The package as npm publishes it, fetched by the host's npm (through its trust store).
      const pack = await mkdtemp(join(tmpdir(), "vp-npm-pack-"));
      try {
        const file = (
          await sh("npm", ["pack", `${NODE_APP.name}@${NODE_APP.version}`, "--silent"], { cwd: pack })
        )
          .trim()
          .split("\n")
          .at(-1)!;
        const into = join(dir, "node_modules", NODE_APP.name);
        await mkdir(into, { recursive: true });
        await sh("tar", ["-xzf", join(pack, file), "-C", into, "--strip-components=1", "--no-same-owner"]);
      } finally {
        await rm(pack, { recursive: true, force: true });
      }
    },
    [
      "--config.env",
      "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca.crt",
      "--config.workingdir",
      `/${NODE_APP.dir}`,
      "--config.cmd",
      "node",
      "--config.cmd",
      "index.js",
    ],
  );
  return pushLayout(app.layout, app.tag, registry, [ref]);
}

/**
 * Push the Python image to `registry/ref`; its digest. Built by `buildkitAddr` from
 * python.Dockerfile (apt-get and pip on the host's network) the first time, its base
 * `debian:12-slim` from the environment's registry (BuildKit's docker.io mirror).
 */
export async function pushPythonAppImage(
  registry: string,
  ref: string,
  buildkitAddr: string,
): Promise<string> {
  const dockerfile = await readFile(join(REPO_ROOT, PYTHON_DOCKERFILE));
  const key = createHash("sha256").update(dockerfile).digest("hex").slice(0, 16);
  const archive = join(cacheDir(), "images", `python-app-${key}.tar`);
  if (!existsSync(archive)) {
    const work = await mkdtemp(join(tmpdir(), "vp-python-app-"));
    const partial = `${archive}.work-${process.pid}`;
    try {
      await mkdir(join(work, "hostca"));
      await copyFile(HOST_CA, join(work, "hostca", "ca-certificates.crt"));
      await mkdir(join(cacheDir(), "images"), { recursive: true });
      await buildDockerfile({
        buildkitAddr,
        dockerfile: PYTHON_DOCKERFILE,
        ref: "python-app",
        contexts: { hostca: join(work, "hostca") },
        metaDir: work,
        output: `type=oci,dest=${partial}`,
      });
      await rename(partial, archive);
    } finally {
      await rm(work, { recursive: true, force: true });
      await rm(partial, { force: true });
    }
  }
  return pushOCI(`oci-archive:${archive}`, join(cacheDir(), "images"), registry, [ref]);
}

/** urllib3 1.26.4's CVEs and the fixes PyPI publishes (the 1.26 branch where there is one). */
export const URLLIB3_CVES = [
  ["CVE-2021-33503", ["1.26.5"]],
  ["CVE-2023-43804", ["1.26.17", "2.0.6"]],
  ["CVE-2023-45803", ["1.26.18", "2.0.7"]],
  ["CVE-2024-37891", ["1.26.19", "2.2.2"]],
  ["CVE-2025-50181", ["2.5.0"]],
] as const;

/** The diffID of an image's top layer (where the app's libraries were installed), from its config. */
async function topDiffID(image: string): Promise<string> {
  const registry = testRegistryClient();
  const ref = parseImageRef(image);
  const m = (await registry.manifestFor(ref, "linux/amd64"))!.manifest as unknown as {
    config: { digest: string };
  };
  const chunks: Buffer[] = [];
  for await (const c of await registry.blob(ref, m.config.digest)) chunks.push(c as Buffer);
  return (
    JSON.parse(Buffer.concat(chunks).toString("utf8")) as { rootfs: { diff_ids: string[] } }
  ).rootfs.diff_ids.at(-1)!;
}

/** Where each image's library is, and its real CVEs with the fixes the registries publish. */
export const APP_LIBRARIES = {
  python: {
    type: "python-pkg",
    purl: "pypi",
    name: PYTHON_APP.name,
    version: PYTHON_APP.version,
    path: `${PYTHON_APP.sitePackages}/${PYTHON_APP.name}-${PYTHON_APP.version}.dist-info/METADATA`,
    cves: URLLIB3_CVES,
  },
  node: {
    type: "node-pkg",
    purl: "npm",
    name: NODE_APP.name,
    version: NODE_APP.version,
    path: `${NODE_APP.dir}/node_modules/${NODE_APP.name}/package.json`,
    cves: [["CVE-2021-44906", ["1.2.6"]]],
  },
} as const;

type CVEs = ReadonlyArray<readonly [string, readonly string[]]>;

/**
 * The honest report of one of these images (its OS findings) with its library's
 * findings added as sbomscanner writes them: a lang-pkgs result, each finding with the
 * package's path and the layer it is in (the top one). `cves` overrides the real list.
 */
export async function libraryReport(
  image: string,
  name: string,
  namespace: string,
  app: keyof typeof APP_LIBRARIES,
  cves?: CVEs,
): Promise<Record<string, unknown>> {
  const lib = APP_LIBRARIES[app];
  const report = await honestReportForImage(image, name, namespace);
  const diffID = await topDiffID(image);
  (report as { report: { results: unknown[] } }).report.results.push({
    target: app === "node" ? "Node.js" : "Python",
    class: "lang-pkgs",
    type: lib.type,
    vulnerabilities: (cves ?? (lib.cves as CVEs)).map(([cve, fixed]) => ({
      cve,
      packageName: lib.name,
      purl: `pkg:${lib.purl}/${lib.name}@${lib.version}`,
      installedVersion: lib.version,
      fixedVersions: [...fixed],
      packagePath: lib.path,
      severity: "HIGH",
      diffID,
      suppressed: false,
    })),
  });
  return report;
}
