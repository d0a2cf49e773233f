// Error classes shared by every component. Each carries a `reason` that is a PatchJob
// status reason, so a failure maps to a status without parsing text.
import { Reason } from "../api/patchjob.ts";

export class UsageError extends Error {
  override name = "UsageError";
  /** Exit code for bad input: 2, like most CLIs. */
  readonly exitCode = 2;
}

export class PatchError extends Error {
  override name = "PatchError";
  readonly reason: Reason;
  /** A transient failure is worth another delivery; a permanent one is not. */
  readonly transient: boolean;
  constructor(reason: Reason, message: string, opts: { transient?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.reason = reason;
    this.transient = opts.transient ?? false;
  }
}

/** Never retried by the reconcile loop: logged, counted and recorded. */
export class TerminalError extends Error {
  override name = "TerminalError";
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export { Reason };
