// buildkitd (built from the Go module proxy) as root with the OCI worker on Debian's
// runc, host networking, the local registry as plain HTTP, and docker.io, ghcr.io and gcr.io
// mirrored to it so copa's Debian tooling image resolves without internet.
import { mkdir, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { dirname, join } from "node:path";
import { Component } from "./component.ts";
import { goBinary, systemBinary } from "./tools.ts";

const run = promisify(execFile);

export interface BuildKit {
  component: Component;
  /** unix:///.../buildkitd.sock */
  addr: string;
  root: string;
}

export function buildkitdConfig(opts: {
  root: string;
  socket: string;
  registry: string;
  /** More plain-HTTP registries on loopback (the one with basic auth). */
  extraRegistries?: string[];
}): string {
  return [
    `root = ${JSON.stringify(opts.root)}`,
    "[grpc]",
    `  address = [${JSON.stringify(`unix://${opts.socket}`)}]`,
    // Its trace socket in its own root too: the default (/run/buildkit) is one per host,
    // and a second buildkitd (several BuildKits, or two environments) could not start.
    "[otel]",
    `  socketPath = ${JSON.stringify(join(opts.root, "otel-grpc.sock"))}`,
    "[worker.oci]",
    "  enabled = true",
    '  snapshotter = "overlayfs"',
    '  networkMode = "host"',
    "  gc = true",
    // A size with its unit: a bare number is bytes (BuildKit would prune all after each build).
    '  gckeepstorage = "10GB"',
    "[worker.containerd]",
    "  enabled = false",
    ...[opts.registry, ...(opts.extraRegistries ?? [])].flatMap((r) => [
      `[registry.${JSON.stringify(r)}]`,
      "  http = true",
    ]),
    '[registry."docker.io"]',
    `  mirrors = [${JSON.stringify(opts.registry)}]`,
    '[registry."ghcr.io"]',
    `  mirrors = [${JSON.stringify(opts.registry)}]`,
    // The copa runner's distroless base (cluster images, src/devenv/cluster-images.ts).
    '[registry."gcr.io"]',
    `  mirrors = [${JSON.stringify(opts.registry)}]`,
    "",
  ].join("\n");
}

export async function buildkitServer(
  dir: string,
  registry: string,
  extraRegistries: string[] = [],
  /** The environment's nth BuildKit (0 first): each its own root, socket and log. */
  index = 0,
): Promise<BuildKit> {
  if (process.getuid?.() !== 0)
    throw new Error("buildkitd needs root here (the OCI worker with runc): run the tests as root");
  const suffix = index ? `-${index + 1}` : "";
  const root = join(dir, `buildkit${suffix}`);
  await mkdir(join(root, "tmp"), { recursive: true });
  const socket = join(root, "buildkitd.sock");
  const config = join(dir, `buildkitd${suffix}.toml`);
  await writeFile(config, buildkitdConfig({ root, socket, registry, extraRegistries }));
  const addr = `unix://${socket}`;
  const runc = systemBinary("runc", "runc");
  const buildctl = goBinary("buildctl");
  const component = new Component(
    {
      name: `buildkitd${suffix}`,
      command: goBinary("buildkitd"),
      args: ["--config", config],
      // TMPDIR inside its root: buildkitd mounts snapshots read-only under the temp dir
      // (buildkit-mountNNN); killed mid-build it leaves them, and unmountUnder(root) must find them.
      env: { ...process.env, PATH: `${dirname(runc)}:${process.env.PATH ?? ""}`, TMPDIR: join(root, "tmp") },
      logDir: dir,
      startTimeoutMs: 60_000,
      ready: async () => {
        await run(buildctl, ["--addr", addr, "debug", "workers"], { timeout: 5_000 });
        return true;
      },
    },
    () => unmountUnder(root),
  );
  return { component, addr, root };
}

/** Unmount everything below `dir`, deepest first (BuildKit's overlay mounts after a crash). */
export async function unmountUnder(dir: string): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  const mounts = (await readFile("/proc/mounts", "utf8"))
    .split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + "/")))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run("umount", ["-l", m]).catch(() => {});
}
