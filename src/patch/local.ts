// The local executor: copa as a child process (the CLI, the demo and tests).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CopaRun } from "./outcome.ts";
import { LineTail, safeFileName, type CopaRequest, type Executor } from "./executor.ts";

import { findTool } from "../util/index.ts";

export interface LocalExecutorOptions {
  /** Path of the copa binary. @default copa on PATH, else the one setup built (findTool) */
  copaPath?: string;
  /** Extra environment (DOCKER_CONFIG for registry credentials, proxies). */
  env?: NodeJS.ProcessEnv;
  /** Grace period between SIGTERM and SIGKILL at the time limit. @default DEFAULT_KILL_GRACE_MS */
  killGraceMs?: number;
}

/** @default 10_000 */
export const DEFAULT_KILL_GRACE_MS = 10_000;
/** When the worker stops, copa gets at most this between SIGTERM and SIGKILL. */
const ABORT_KILL_GRACE_MS = 2_000;

/** util-linux's setpriv, when present (Linux). */
const PDEATHSIG = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

/** Throws MissingToolError (saying what to run) when there is no copa to run. */
export function localExecutor(options: LocalExecutorOptions = {}): Executor {
  const opts = { ...options, copaPath: findTool("copa", options.copaPath) };
  return {
    kind: "local",
    async run(req: CopaRequest): Promise<CopaRun> {
      const dir = await mkdtemp(join(tmpdir(), "vuln-patcher-copa-"));
      try {
        let manifest = req.manifest ? join(dir, "manifest.json") : undefined;
        const vex = req.manifest ? join(dir, "vex.json") : undefined;
        if (manifest) await writeFile(manifest, JSON.stringify(req.manifest, null, 2));
        if (req.manifests) {
          manifest = join(dir, "reports");
          await mkdir(manifest);
          for (const [file, m] of Object.entries(req.manifests))
            await writeFile(join(manifest, safeFileName(file)), JSON.stringify(m, null, 2));
        }
        // This run's credentials in a directory only this process can read, removed with it.
        let env = req.env ? { ...opts.env, ...req.env } : opts.env;
        if (req.dockerConfig !== undefined) {
          const docker = join(dir, "docker");
          await mkdir(docker, { mode: 0o700 });
          await writeFile(join(docker, "config.json"), req.dockerConfig, { mode: 0o600 });
          env = { ...env, DOCKER_CONFIG: docker };
        }
        const run = await spawnCopa({ ...opts, ...(env ? { env } : {}) }, req, req.args({ manifest, vex }));
        if (vex) run.vex = await readFile(vex, "utf8").catch(() => undefined);
        return run;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

function spawnCopa(opts: LocalExecutorOptions, req: CopaRequest, argv: string[]): Promise<CopaRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tail = new LineTail();
    let timedOut = false;
    // argv array, no shell: nothing in a reference or path is ever interpreted. Under
    // setpriv --pdeathsig, copa dies with this process: a worker killed mid-patch must
    // not leave a copa behind that pushes after another worker took the job over.
    const copa = opts.copaPath ?? "copa";
    const [cmd, args] = PDEATHSIG ? [PDEATHSIG, ["--pdeathsig", "KILL", "--", copa, ...argv]] : [copa, argv];
    const child = spawn(cmd, args, {
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const onData = (b: Buffer) => tail.push(b.toString("utf8"), req.onOutput);
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (graceMs: number) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      signalGroup(child.pid, "SIGTERM");
      killTimer = setTimeout(() => signalGroup(child.pid, "SIGKILL"), graceMs);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop(opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    }, req.timeoutMs);
    // The worker is stopping: its copa goes quickly (the request goes back to the queue).
    const onAbort = () => stop(Math.min(opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS, ABORT_KILL_GRACE_MS));
    req.signal?.addEventListener("abort", onAbort, { once: true });
    child.once("error", (err) => {
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", onAbort);
      reject(new Error(`cannot run copa (${opts.copaPath ?? "copa"}): ${err.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      req.signal?.removeEventListener("abort", onAbort);
      resolve({
        exitCode: code,
        signal,
        durationMs: Date.now() - started,
        outputTail: tail.text(),
        timedOut,
      });
    });
  });
}

function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  }
}
