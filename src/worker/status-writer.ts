// Writing a worker's terminal status: for the generation it holds, re-reading when
// someone wrote meanwhile; and the platforms' PatchJobs of an index.
import type { PatchJob, PatchJobStatus } from "../api/index.ts";
import { ignoreConflict, type PatchJobClient } from "../kube/index.ts";

export class StatusNotRecordedError extends Error {
  override name = "StatusNotRecordedError";
  readonly code = "STATUS_NOT_RECORDED";
}

/**
 * Record a status for the generation we hold. On a conflict, re-read and write again
 * (3 tries). Undefined when the PatchJob moved on (gone, new uid or generation): the
 * result no longer belongs to it. Throws StatusNotRecordedError when it kept conflicting:
 * the caller must not ack then, so the request comes back.
 */
export async function finish(
  client: PatchJobClient,
  pj: PatchJob,
  make: (p: PatchJob) => PatchJobStatus,
): Promise<PatchJob | undefined> {
  for (let i = 0; i < 3; i++) {
    const written = await ignoreConflict(client.updateStatus(pj, make(pj)));
    if (written) return written;
    const fresh = await client.get(pj.metadata.namespace!, pj.metadata.name);
    if (
      !fresh ||
      fresh.metadata.uid !== pj.metadata.uid ||
      fresh.metadata.generation !== pj.metadata.generation
    )
      return undefined;
    pj = fresh;
  }
  throw new StatusNotRecordedError(
    `the status of ${pj.metadata.namespace}/${pj.metadata.name} kept conflicting; not acked, it comes back`,
  );
}

/**
 * Write each platform's PatchJob (the members listed in the index PatchJob's spec), for
 * the generation the plan came from only: a member that moved on since belongs to the
 * index PatchJob's next generation.
 */
export async function finishMembers(
  client: PatchJobClient,
  index: PatchJob,
  make: (platform: string) => ((m: PatchJob) => PatchJobStatus) | undefined,
): Promise<PatchJob[]> {
  const written: PatchJob[] = [];
  for (const p of index.spec.platforms ?? []) {
    if (!p.patchJob) continue;
    const status = make(p.platform);
    if (!status) continue;
    const member = await client.get(index.metadata.namespace!, p.patchJob);
    if (!member || (member.metadata.generation ?? 1) !== (p.generation ?? 1)) continue;
    const w = await finish(client, member, (m) => ({ ...status(m), group: index.metadata.name }));
    if (w) written.push(w);
  }
  return written;
}

/**
 * The client an attempt records with: every status it writes (the PatchJob's, and an
 * index's platforms') also carries `fields`, such as the BuildKit that ran it.
 */
export function stampingClient(client: PatchJobClient, fields: Partial<PatchJobStatus>): PatchJobClient {
  return {
    get: (ns, name) => client.get(ns, name),
    list: (ns, selector) => client.list(ns, selector),
    create: (pj) => client.create(pj),
    updateSpec: (pj, spec) => client.updateSpec(pj, spec),
    updateStatus: (pj, status) => client.updateStatus(pj, { ...status, ...fields }),
    delete: (ns, name) => client.delete(ns, name),
  };
}
