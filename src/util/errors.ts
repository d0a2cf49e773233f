// Errors every component shares: bad input (exit code 2) and turning anything thrown
// into one line. Errors that carry a PatchJob status reason live in src/api/errors.ts.

export class UsageError extends Error {
  override name = "UsageError";
  readonly code = "USAGE";
  /** Exit code for bad input: 2, like most CLIs. */
  readonly exitCode = 2;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
