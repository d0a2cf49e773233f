// Kubernetes API errors, as client-node 2.x throws them (ApiException with a numeric
// code; the body may be a raw string for statuses the spec does not declare).
import { ApiException } from "@kubernetes/client-node";

export function statusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e?.code === "number") return e.code;
  if (typeof e?.statusCode === "number") return e.statusCode;
  return undefined;
}

export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;

/** The server's message, one line, for logs and status. */
export function apiMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const b = err.body as unknown;
    let msg: string | undefined;
    if (typeof b === "string") {
      try {
        msg = (JSON.parse(b) as { message?: string }).message;
      } catch {
        msg = b.slice(0, 300);
      }
    } else msg = (b as { message?: string } | undefined)?.message;
    return `${err.code}: ${msg ?? "request failed"}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export async function ignoreNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * The write, or undefined when it conflicted (409: the object changed since it was read,
 * or already exists). Level-triggered callers take that as "look again", not a failure.
 */
export async function ignoreConflict<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isConflict(err)) return undefined;
    throw err;
  }
}

/** A failed request of our own (rawGet): the HTTP status as `code`, as client-node's errors carry it. */
export class KubeApiError extends Error {
  override name = "KubeApiError";
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}
