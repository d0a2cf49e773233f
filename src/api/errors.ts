// A failure that maps to a PatchJob status reason, so the worker records it without
// parsing text, and knows whether another delivery could help.
import type { Reason } from "./patchjob.ts";

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
  /** The reason, as a code (nats.js and Node habit: match `code`, never the message). */
  get code(): Reason {
    return this.reason;
  }
}
