// One interface for running copa, whatever runs it: a child process here (`local`),
// a Kubernetes Job in a cluster (`kubernetes`).
import type { UpdateManifest } from "../api/index.ts";
import type { TrivyReport } from "./libraries.ts";
import type { CopaRun } from "./outcome.ts";

export interface CopaRequest {
  /** A stable name for this run (the PatchJob name and generation), used for Job and ConfigMap names. */
  id: string;
  /** copa's argv without the program name; the manifest and VEX paths are placeholders the executor fills. */
  args: (paths: { manifest?: string; vex?: string }) => string[];
  /** The native manifest (or, with library updates, the Trivy report) to hand copa; absent = update-all mode. */
  manifest?: UpdateManifest | TrivyReport;
  /** Extra environment for copa (COPA_EXPERIMENTAL=1 for library updates); names and values checked by the executor. */
  env?: Record<string, string>;
  /**
   * A multi-arch patch: one native manifest per platform (file name -> manifest), handed
   * to copa as a directory (its report-directory mode). The `manifest` path is then the
   * directory, and there is no VEX document.
   */
  manifests?: Record<string, UpdateManifest>;
  /** Hard limit for the whole run (a little longer than copa's own --timeout). */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called as output arrives (for progress and heartbeats). */
  onOutput?: (line: string) => void;
  /**
   * This run's registry credentials (dockerconfigjson text): the PatchJob's tenant's,
   * resolved by the worker. Handed to copa as DOCKER_CONFIG for this run only, never
   * written where another run could read it. Absent: the executor's own, if any.
   */
  dockerConfig?: string;
  /** Where a Job runs, and what owns it (the PatchJob), for the kubernetes executor. */
  namespace?: string;
  owner?: { apiVersion: string; kind: string; name: string; uid: string };
}

export interface Executor {
  readonly kind: "local" | "kubernetes";
  run(req: CopaRequest): Promise<CopaRun>;
}

/** Keeps the last `max` lines of a stream of text chunks. */
export class LineTail {
  #lines: string[] = [];
  #partial = "";
  readonly max: number;
  constructor(max = 200) {
    this.max = max;
  }
  push(chunk: string, onLine?: (l: string) => void): void {
    const parts = (this.#partial + chunk).split("\n");
    this.#partial = parts.pop() ?? "";
    for (const l of parts) {
      onLine?.(l);
      this.#lines.push(l);
    }
    if (this.#lines.length > this.max) this.#lines.splice(0, this.#lines.length - this.max);
  }
  text(): string {
    return [...this.#lines, this.#partial].filter((l) => l !== "").join("\n");
  }
}

/** A manifest file name that cannot leave its directory (keys of CopaRequest.manifests). */
export function safeFileName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name) || name.includes(".."))
    throw new Error(`invalid manifest file name ${JSON.stringify(name)}`);
  return name;
}
