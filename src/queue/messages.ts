// The patch request on the wire: a reference to a PatchJob, never a copy of it. The
// PatchJob is the truth; the message is a wake-up call.

export const STREAM = "VULN_PATCHER";
export const SUBJECT_PREFIX = "vulnpatcher.patch";
export const CONSUMER = "workers";

export interface PatchRequest {
  namespace: string;
  name: string;
  uid: string;
  generation: number;
}

/** vulnpatcher.patch.<namespace>.<name>: one subject per PatchJob (names have no dots? they may: encode). */
export function subjectFor(r: Pick<PatchRequest, "namespace" | "name">): string {
  return `${SUBJECT_PREFIX}.${token(r.namespace)}.${token(r.name)}`;
}

function token(s: string): string {
  // NATS subject tokens cannot hold '.', '*', '>' or whitespace; Kubernetes names can hold '.'.
  return s.replace(/[.*>\s]/g, "_");
}

/** JetStream drops a second publish with the same id inside the de-dup window. */
export function msgIdFor(r: Pick<PatchRequest, "uid" | "generation">): string {
  return `${r.uid}/${r.generation}`;
}

export function encodeRequest(r: PatchRequest): string {
  return JSON.stringify({ namespace: r.namespace, name: r.name, uid: r.uid, generation: r.generation });
}

export class BadMessageError extends Error {
  override name = "BadMessageError";
}

export function decodeRequest(data: Uint8Array | string): PatchRequest {
  let v: unknown;
  try {
    v = JSON.parse(typeof data === "string" ? data : Buffer.from(data).toString("utf8"));
  } catch {
    throw new BadMessageError("patch request is not JSON");
  }
  const o = v as Partial<PatchRequest>;
  if (
    !o ||
    typeof o.namespace !== "string" ||
    typeof o.name !== "string" ||
    typeof o.uid !== "string" ||
    !Number.isInteger(o.generation)
  ) {
    throw new BadMessageError("patch request needs namespace, name, uid and an integer generation");
  }
  return { namespace: o.namespace, name: o.name, uid: o.uid, generation: o.generation as number };
}
