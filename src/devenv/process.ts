// Child processes of the real-component environment: started in their own process
// group (so a component's own children, e.g. buildkitd's runc, go with it), logged to
// a file, polled until ready, and stopped by pid with SIGTERM then SIGKILL.
import { spawn } from "node:child_process";
import { openSync, closeSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";

export interface ProcessSpec {
  /** Short name, used for the log file and in errors. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Directory for `<name>.log`. */
  logDir: string;
  /** Resolves true once the component answers. */
  ready: () => Promise<boolean>;
  /** @default 60_000 */
  startTimeoutMs?: number;
}

export interface RunningProcess {
  name: string;
  pid: number;
  logFile: string;
}

/** Processes this Node process started and has not stopped yet: killed on exit as a last resort. */
const live = new Map<number, string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const pid of live.keys()) killGroup(pid, "SIGKILL");
  });
}

/** Forget a pid so that the exit hook leaves it running (for `dev up`, whose processes outlive it). */
export function detachFromExitHook(pid: number): void {
  live.delete(pid);
}

export async function startProcess(spec: ProcessSpec): Promise<RunningProcess> {
  installExitHook();
  const logFile = join(spec.logDir, `${spec.name}.log`);
  const fd = openSync(logFile, "a");
  let exitInfo: string | undefined;
  const child = spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: spec.env ?? process.env,
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  child.once("exit", (code, signal) => {
    exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
    if (child.pid) live.delete(child.pid);
  });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`${spec.name}: could not start ${spec.command}: ${(await spawnError).message}`);
  }
  live.set(pid, spec.name);
  const deadline = Date.now() + (spec.startTimeoutMs ?? 60_000);
  for (;;) {
    if (exitInfo !== undefined) {
      throw new Error(
        `${spec.name} exited before it was ready (${exitInfo}); log ${logFile}:\n${tail(logFile)}`,
      );
    }
    if (await spec.ready().catch(() => false)) break;
    if (Date.now() > deadline) {
      await stopPid(pid, 5_000);
      throw new Error(
        `${spec.name} was not ready after ${spec.startTimeoutMs ?? 60_000} ms; log ${logFile}:\n${tail(logFile)}`,
      );
    }
    await sleep(100);
  }
  return { name: spec.name, pid, logFile };
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** True while the pid exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** SIGTERM to the process group, SIGKILL after `timeoutMs`, and wait until the pid is gone. */
export async function stopPid(pid: number, timeoutMs = 20_000): Promise<void> {
  killGroup(pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      killGroup(pid, "SIGKILL");
      const hard = Date.now() + 10_000;
      while (isAlive(pid) && Date.now() < hard) await sleep(50);
      break;
    }
    await sleep(50);
  }
  // The group may hold children that outlived their parent (a runc shim, say).
  killGroup(pid, "SIGKILL");
  live.delete(pid);
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}
