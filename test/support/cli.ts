// Run vuln-patcher commands as child processes (what a Deployment runs), stopped by pid.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, goBinary } from "../../src/devenv/tools.ts";
import { isAlive, stopPid } from "../../src/devenv/process.ts";
import { freePort, httpStatus } from "../../src/devenv/net.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { plainHTTPRegistries } from "../../src/devenv/registry.ts";

export interface CliProcess {
  child: ChildProcess;
  pid: number;
  logFile: string;
  url?: string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  kill(): void;
  metrics(): Promise<string>;
}

const live = new Set<number>();
process.on("exit", () => {
  for (const pid of live) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
});

/** Start `vuln-patcher <args>`; `listenPort` makes it wait for /healthz. */
export async function startCli(
  args: string[],
  opts: { logDir: string; name: string; env?: NodeJS.ProcessEnv; listenPort?: number },
): Promise<CliProcess> {
  const logFile = join(opts.logDir, `${opts.name}.log`);
  const out = createWriteStream(logFile, { flags: "a" });
  // The compiled CLI, as a container runs it (npm test builds it first).
  const main = join(REPO_ROOT, "dist", "src", "cli", "main.js");
  if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build`);
  const child = spawn(process.execPath, [main, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  const pid = child.pid!;
  live.add(pid);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      live.delete(pid);
      resolve(code);
    }),
  );
  const url = opts.listenPort ? `http://127.0.0.1:${opts.listenPort}` : undefined;
  if (url) {
    let gone = false;
    void exited.then(() => (gone = true));
    await waitFor(
      `${opts.name} to serve /healthz (log ${logFile})`,
      async () => {
        if (gone) throw new Error(`${opts.name} exited; see ${logFile}`);
        return (await httpStatus(`${url}/healthz`)) === 200 || undefined;
      },
      60_000,
    );
  }
  return {
    child,
    pid,
    logFile,
    url,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (!isAlive(pid)) return;
      child.kill(signal);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (isAlive(pid)) await stopPid(pid, 1000);
    },
    kill() {
      child.kill("SIGKILL");
    },
    async metrics() {
      if (!url) throw new Error("no listen port");
      return (await fetch(`${url}/metrics`)).text();
    },
  };
}

/** Sum of a metric's samples (optionally matching a label substring). */
export function metricValue(text: string, name: string, labelFilter = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-0-9.eE+]+|NaN)/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labelFilter && !(m[2] ?? "").includes(labelFilter)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/**
 * `vuln-patcher controller` on an environment's apiserver and NATS, listening on a free
 * port (and waiting for /healthz). `args` come after the connection flags.
 */
export async function startControllerCli(
  env: { kubeconfig: string; natsURL: string; dir: string },
  args: string[] = [],
  o: { name?: string; env?: NodeJS.ProcessEnv; leaderElect?: boolean } = {},
): Promise<CliProcess> {
  const port = await freePort();
  return startCli(
    [
      "controller",
      ...["--kubeconfig", env.kubeconfig, "--nats-url", env.natsURL],
      ...((o.leaderElect ?? false) ? [] : ["--leader-elect=false"]),
      ...["--listen", `127.0.0.1:${port}`],
      ...args,
    ],
    { logDir: env.dir, name: o.name ?? "controller", listenPort: port, ...(o.env ? { env: o.env } : {}) },
  );
}

/** `vuln-patcher worker` with the local executor on an environment's NATS, apiserver and BuildKit. */
export function localWorkerArgs(env: {
  kubeconfig: string;
  natsURL: string;
  buildkitAddr: string;
}): string[] {
  return [
    "worker",
    "--kubeconfig",
    env.kubeconfig,
    "--nats-url",
    env.natsURL,
    "--executor",
    "local",
    "--copa",
    goBinary("copa"),
    "--buildkit-addr",
    env.buildkitAddr,
    // A real node's registry serves plain HTTP on the bridge, not on loopback.
    ...[...plainHTTPRegistries].flatMap((r) => ["--insecure-registry", r]),
  ];
}
