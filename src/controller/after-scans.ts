// Which report is the after-scan of which PatchJob: reports by image digest, PatchJobs by
// the digest they published. A report of a patched digest wakes its PatchJobs; a
// PatchJob asks for the report of its digest (its own namespace's first).
import type { PatchJob } from "../api/index.ts";
import { patchedDigests, type ReportSummary } from "../decide/index.ts";
import { keyOf, kindOf, type Kind } from "./routing.ts";

export class AfterScans {
  #reports = new Map<string, Set<string>>();
  #patchJobs = new Map<string, Map<string, Kind>>();
  #reportDigest = new Map<string, string>();
  #pjDigests = new Map<string, string[]>();

  /** A report added, changed or gone: returns the PatchJobs to wake. */
  report(key: string, s: ReportSummary | undefined): Array<[Kind, string]> {
    const old = this.#reportDigest.get(key);
    const digest = s?.facts?.imageMetadata.digest;
    if (old && old !== digest) remove(this.#reports, old, key);
    if (digest) {
      add(this.#reports, digest, key);
      this.#reportDigest.set(key, digest);
    } else this.#reportDigest.delete(key);
    const out: Array<[Kind, string]> = [];
    for (const d of new Set([old, digest]))
      if (d) for (const [k, kind] of this.#patchJobs.get(d) ?? []) out.push([kind, k]);
    return out;
  }

  patchJob(pj: PatchJob, gone = false): void {
    const key = keyOf(pj);
    for (const d of this.#pjDigests.get(key) ?? []) {
      const m = this.#patchJobs.get(d);
      m?.delete(key);
      if (m?.size === 0) this.#patchJobs.delete(d);
    }
    const digests = gone ? [] : patchedDigests(pj);
    if (digests.length) this.#pjDigests.set(key, digests);
    else this.#pjDigests.delete(key);
    for (const d of digests) {
      let m = this.#patchJobs.get(d);
      if (!m) this.#patchJobs.set(d, (m = new Map()));
      m.set(key, kindOf(pj));
    }
  }

  /** The report of this PatchJob's patched digest (its namespace's first, then any), by key. */
  scanOf(pj: PatchJob | undefined): string | undefined {
    if (!pj) return undefined;
    const keys = patchedDigests(pj)
      .flatMap((d) => [...(this.#reports.get(d) ?? [])])
      .sort();
    return keys.find((k) => k.startsWith(`${pj.metadata.namespace}/`)) ?? keys[0];
  }
}

function add(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function remove(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k);
  s?.delete(v);
  if (s?.size === 0) m.delete(k);
}
