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
export const isAlreadyExists = (err: unknown): boolean =>
  statusCode(err) === 409 && /AlreadyExists/i.test(bodyReason(err) ?? "AlreadyExists");
export const isForbidden = (err: unknown): boolean => statusCode(err) === 403;

export function bodyReason(err: unknown): string | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const b = err.body as unknown;
  if (typeof b === "string") {
    try {
      return (JSON.parse(b) as { reason?: string }).reason;
    } catch {
      return undefined;
    }
  }
  return (b as { reason?: string } | undefined)?.reason;
}

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

export async function ignoreAlreadyExists<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isConflict(err)) return undefined;
    throw err;
  }
}
