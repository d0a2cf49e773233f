// One process of the environment: started as a child, stopped by pid.
import { setTimeout as sleep } from "node:timers/promises";
import { isAlive, startProcess, stopPid, type ProcessSpec, type RunningProcess } from "./process.ts";

/**
 * One restartable child process: the same port and data directory on every start,
 * so tests can stop a component (NATS, BuildKit) and bring it back.
 */
export class Component {
  readonly name: string;
  #spec: ProcessSpec;
  #proc: RunningProcess | undefined;
  #afterStop?: () => Promise<void>;

  /** `afterStop` undoes what the process did to the host (mounts, say), even after a crash. */
  constructor(spec: ProcessSpec, afterStop?: () => Promise<void>) {
    this.name = spec.name;
    this.#spec = spec;
    this.#afterStop = afterStop;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  get logFile(): string | undefined {
    return this.#proc?.logFile;
  }

  async start(): Promise<this> {
    if (!this.#proc) this.#proc = await startProcess(this.#spec);
    return this;
  }

  /** SIGKILL, as a crash would: no shutdown of its own. Waits until the pid is gone; start() brings it back. */
  async kill(): Promise<void> {
    const p = this.#proc;
    this.#proc = undefined;
    if (!p) return;
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
    while (isAlive(p.pid)) await sleep(20);
    await stopPid(p.pid, 0); // the bookkeeping (and any child left in its group)
  }

  async stop(): Promise<void> {
    const p = this.#proc;
    this.#proc = undefined;
    if (p) await stopPid(p.pid);
    await this.#afterStop?.();
  }
}
