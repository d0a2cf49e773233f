// Which reconciler a PatchJob belongs to, and which keys an event wakes. Three kinds,
// three work queues: a report's PatchJob (keyed like its report), an index PatchJob
// (its platforms' PatchJobs carry its name in a label), and a PatchJob made by hand or
// by a policy run.
import { type PatchJob, Source } from "../api/index.ts";
import { INDEX_GROUP_LABEL, INDEX_LABEL, isIndexPatchJob } from "../decide/index.ts";

export type Kind = "report" | "index" | "request";

export function keyOf(pj: Pick<PatchJob, "metadata">): string {
  return `${pj.metadata.namespace}/${pj.metadata.name}`;
}

export function splitKey(key: string): [namespace: string, name: string] {
  const i = key.indexOf("/");
  return [key.slice(0, i), key.slice(i + 1)];
}

export function kindOf(pj: PatchJob): Kind {
  if (pj.metadata.labels?.[INDEX_LABEL] === "true" || isIndexPatchJob(pj)) return "index";
  return pj.spec.source === Source.Report ? "report" : "request";
}

/** The index a platform's PatchJob belongs to, by its label. */
export function groupOf(pj: PatchJob): string | undefined {
  const g = pj.metadata.labels?.[INDEX_GROUP_LABEL];
  return g ? `${pj.metadata.namespace}/${g}` : undefined;
}

/** The keys an event on this PatchJob wakes, per kind. */
export function wakes(pj: PatchJob): Array<[Kind, string]> {
  const kind = kindOf(pj);
  const out: Array<[Kind, string]> = [[kind, keyOf(pj)]];
  const group = kind === "report" ? groupOf(pj) : undefined;
  if (group) out.push(["index", group]);
  return out;
}

/** The platforms' PatchJobs of each index, kept up to date from PatchJob events. */
export class MemberIndex {
  #members = new Map<string, Set<string>>();

  add(pj: PatchJob): void {
    const g = groupOf(pj);
    if (!g) return;
    let s = this.#members.get(g);
    if (!s) this.#members.set(g, (s = new Set()));
    s.add(keyOf(pj));
  }

  delete(pj: PatchJob): void {
    const g = groupOf(pj);
    const s = g ? this.#members.get(g) : undefined;
    if (!s) return;
    s.delete(keyOf(pj));
    if (s.size === 0) this.#members.delete(g!);
  }

  membersOf(indexKey: string): string[] {
    return [...(this.#members.get(indexKey) ?? [])];
  }
}
