// vuln-patcher dev up|down|status: the real-component environment of the tests, for
// humans. `up` starts the processes detached (they outlive this command) and records
// their pids in a state file; `down` stops them by pid.
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setup, cacheDir, isAlive, stopPid, type Endpoints, type Env } from "../devenv/index.ts";
import {
  drainNode,
  markNodeKept,
  NODE_HOST_RECORD,
  undoNodeHost,
  type NodeHostRecord,
} from "../devenv/node.ts";
import { loadKubeConfig } from "../kube/index.ts";
import { detachFromExitHook } from "../devenv/process.ts";

import { UsageError, newLogger } from "../util/index.ts";
import { exitSoon, onShutdown } from "./shutdown.ts";
import { parse } from "./args.ts";

export const devUsage = `Usage: vuln-patcher dev up [--json] [--name NAME] [--node] [--foreground]
       vuln-patcher dev down [--name NAME]
       vuln-patcher dev status [--json] [--name NAME]

up      start etcd, kube-apiserver, kube-controller-manager, NATS (JetStream), a
        registry and (as root) BuildKit with the vulnerable test image, on
        127.0.0.1; print their endpoints (--json for scripts)
        --node adds a real node (root; one per machine): containerd, kubelet,
        kube-scheduler, kube-proxy and CoreDNS on a bridge (vpbr0, 10.244.0.1) that
        the registry, NATS and the apiserver then listen on instead of 127.0.0.1
        --foreground keeps this command running until Ctrl-C (or SIGTERM), then
        takes the environment down as \`dev down\` does
down    stop every process of the environment by pid and remove its data; with a
        node, delete its Pods first and undo every host change (bridge, iptables
        chains, mounts, cgroups, ip_forward)
status  show each process and whether it is alive
NAME keeps several environments apart (default "default").`;

/** BuildKit needs root; `dev up` includes it (and the test images) when it can run. */
function wantBuildkit(): boolean {
  return process.env.VULN_PATCHER_DEV_BUILDKIT !== "0" && process.getuid?.() === 0;
}

interface State extends Endpoints {
  name: string;
  startedAt: string;
  /** In start order; stopped in reverse. */
  order: string[];
}

function stateDir(name: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name))
    throw new UsageError(`--name must be lowercase letters, digits and dashes, got ${JSON.stringify(name)}`);
  return join(cacheDir(), "dev", name);
}

async function readState(name: string): Promise<State | undefined> {
  const f = join(stateDir(name), "state.json");
  if (!existsSync(f)) return undefined;
  return JSON.parse(await readFile(f, "utf8")) as State;
}

export async function devCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parse(rest, {
    json: { type: "boolean" },
    name: { type: "string", default: "default" },
    node: { type: "boolean" },
    foreground: { type: "boolean" },
  });
  if (values.help || !sub) {
    process.stdout.write(devUsage + "\n");
    return sub ? 0 : 2;
  }
  const name = values.name as string;
  switch (sub) {
    case "up": {
      const code = await devUp(name, !!values.json, !!values.node);
      return values.foreground ? untilSignalThenDown(name) : code;
    }
    case "down":
      return devDown(name);
    case "status":
      return devStatus(name, !!values.json);
    default:
      throw new UsageError(`unknown dev subcommand ${JSON.stringify(sub)} (up, down, status)`);
  }
}

/** `up --foreground`: the environment stays until SIGINT or SIGTERM, then goes down. */
async function untilSignalThenDown(name: string): Promise<number> {
  const log = newLogger("dev");
  // Stopping an environment (a node's Pods drained first) takes a while: two minutes, then exit anyway.
  const shutdown = onShutdown(log, 120_000);
  process.stderr.write(`environment ${name} is up until Ctrl-C (or SIGTERM)\n`);
  // Nothing else keeps this process alive: its children are detached.
  const keepAlive = setInterval(() => {}, 2 ** 30);
  await shutdown.requested;
  clearInterval(keepAlive);
  const code = await devDown(name);
  exitSoon(code);
  return code;
}

/** A fresh directory for environment `name`, refusing if one is already up. */
export async function prepareDevDir(name: string): Promise<string> {
  const existing = await readState(name);
  if (existing && Object.values(existing.pids).some(isAlive)) {
    throw new UsageError(
      `environment ${name} is already up (data in ${existing.dir}); run 'vuln-patcher dev down --name ${name}' first`,
    );
  }
  const dir = stateDir(name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Let `env`'s processes outlive this command; `dev down --name` stops them. */
export async function keepDevEnv(name: string, env: Env): Promise<State> {
  for (const c of env.components) if (c.pid) detachFromExitHook(c.pid);
  const state: State = {
    ...env.endpoints(),
    name,
    startedAt: new Date().toISOString(),
    order: env.components.map((c) => c.name),
  };
  await writeFile(join(stateDir(name), "state.json"), JSON.stringify(state, null, 2) + "\n");
  return state;
}

async function devUp(name: string, json: boolean, node: boolean): Promise<number> {
  if (node && process.getuid?.() !== 0)
    throw new UsageError("--node needs root (containerd, kubelet, a bridge)");
  const dir = await prepareDevDir(name);
  // setup() stops what it started when it fails; the directory is ours to remove.
  const env = await setup({ dir, buildkit: wantBuildkit(), node }).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    throw err;
  });
  const state = await keepDevEnv(name, env);
  // The node outlives this command: no later `up` may take it for a crashed one.
  if (node) await markNodeKept(dir);
  if (json) process.stdout.write(JSON.stringify(state, null, 2) + "\n");
  else {
    process.stdout.write(
      [
        `environment ${name} is up (data and logs in ${dir})`,
        `  kubeconfig  ${state.kubeconfig}`,
        `  apiserver   ${state.apiserver}`,
        `  NATS        ${state.natsURL}`,
        `  registry    ${state.registry} (plain HTTP)`,
        ...(state.node ? [`  node        ${state.node} (Pods run; Pod network 10.244.0.0/24)`] : []),
        ...(state.buildkitAddr
          ? [
              `  BuildKit    ${state.buildkitAddr}`,
              `  copa        ${state.copa}`,
              `  image       ${state.vulnerableImage} (vulnerable Debian bookworm)`,
            ]
          : []),
        "",
        `  export KUBECONFIG=${state.kubeconfig} NATS_URL=${state.natsURL}`,
        `  kubectl get ns`,
        `  vuln-patcher dev down${name === "default" ? "" : ` --name ${name}`}   # stops everything`,
        "",
      ].join("\n"),
    );
  }
  return 0;
}

async function devDown(name: string): Promise<number> {
  const state = await readState(name);
  if (!state) {
    process.stderr.write(`environment ${name} is not up\n`);
    return 0;
  }
  const record = await readFile(join(state.dir, NODE_HOST_RECORD), "utf8")
    .then((t) => JSON.parse(t) as NodeHostRecord)
    .catch(() => undefined);
  // Pods go while the kubelet still runs, so it unmounts and tears down their sandboxes.
  // Only through a live apiserver: a dead one's address may route nowhere (the bridge is gone).
  const apiserver = state.pids["kube-apiserver"];
  if (state.node && state.kubeconfig && existsSync(state.kubeconfig) && apiserver && isAlive(apiserver))
    await drainNode(loadKubeConfig(state.kubeconfig)).catch(() => {});
  for (const proc of [...state.order].reverse()) {
    const pid = state.pids[proc];
    if (pid && isAlive(pid)) await stopPid(pid);
  }
  if (record) await undoNodeHost(record);
  await rm(state.dir, { recursive: true, force: true });
  process.stderr.write(`environment ${name} is down\n`);
  return 0;
}

async function devStatus(name: string, json: boolean): Promise<number> {
  const state = await readState(name);
  if (!state) {
    if (json) process.stdout.write(JSON.stringify({ name, up: false }) + "\n");
    else process.stdout.write(`environment ${name} is not up\n`);
    return 1;
  }
  const procs = state.order.map((p) => ({
    name: p,
    pid: state.pids[p],
    alive: !!state.pids[p] && isAlive(state.pids[p]!),
  }));
  const up = procs.every((p) => p.alive);
  if (json) process.stdout.write(JSON.stringify({ ...state, up, processes: procs }, null, 2) + "\n");
  else {
    process.stdout.write(`environment ${name}: ${up ? "up" : "DEGRADED"} (since ${state.startedAt})\n`);
    for (const p of procs)
      process.stdout.write(
        `  ${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${p.alive ? "running" : "stopped"}\n`,
      );
  }
  return up ? 0 : 1;
}
