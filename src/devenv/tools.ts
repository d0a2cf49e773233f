// Where the environment's binaries come from: Debian's packages on PATH (the registry,
// runc, ...), and the Go-built ones (Kubernetes, etcd, nats-server, BuildKit, copa, helm)
// from the version-keyed cache that scripts/build-tools.sh fills.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../api/index.ts";

import { cacheDir, cachedTool } from "../util/index.ts";

const run = promisify(execFile);
/** The checkout (found by looking upward, so this works from src and from a compiled dist/). */
export const REPO_ROOT = projectRoot();

export { cacheDir };

export type GoComponent = "kube" | "etcd" | "nats" | "buildkit" | "copa" | "helm" | "cosign" | "node";

const BINARIES: Record<GoComponent, string[]> = {
  kube: ["kube-apiserver", "kube-controller-manager", "kubectl"],
  etcd: ["etcd"],
  nats: ["nats-server"],
  buildkit: ["buildkitd", "buildctl"],
  copa: ["copa"],
  helm: ["helm"],
  cosign: ["cosign"],
  node: [
    "kubelet",
    "kube-scheduler",
    "kube-proxy",
    "coredns",
    "containerd",
    "containerd-shim-runc-v2",
    "pause",
  ],
};

/** Path of a Go-built binary in the cache (a symlink to its versioned file). */
export function goBinary(name: string): string {
  return cachedTool(name);
}

/**
 * Builds what is missing (the script is a no-op when the versioned binaries are
 * cached, and serialises concurrent builders with a lock), then returns.
 */
export async function ensureGoTools(components: GoComponent[]): Promise<void> {
  const missing = components.filter((c) => BINARIES[c].some((b) => !existsSync(goBinary(b))));
  // Even when present, run the script: it re-links when a pinned version changed.
  await run(join(REPO_ROOT, "scripts", "build-tools.sh"), components, {
    maxBuffer: 64 * 1024 * 1024,
    timeout: missing.length ? 60 * 60_000 : 60_000,
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(
      `building ${components.join(", ")} failed: ${err.stderr?.trim().split("\n").slice(-15).join("\n") ?? err.message}`,
    );
  });
}

/** A Debian-packaged program; a clear error names the package when it is absent. */
export function systemBinary(name: string, pkg: string): string {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/sbin"])) {
    const p = join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  throw new Error(`${name} not found: install the Debian package ${pkg} (make setup does)`);
}
