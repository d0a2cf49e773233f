// The fault suite's summary: one line per injected fault, what was expected and what
// was observed, as a test diagnostic (in the TAP/spec output) and on stderr, so the
// README's test command prints the table the closing note quotes.
import type { TestContext } from "node:test";

export interface FaultSummary {
  fault: string;
  injected: string;
  expected: string;
  observed: string;
}

export function reportFault(t: TestContext, s: FaultSummary): void {
  const line = `FAULT ${s.fault} | injected: ${s.injected} | expected: ${s.expected} | observed: ${s.observed}`;
  t.diagnostic(line);
  process.stderr.write(line + "\n");
}
