// A node:test reporter that collects each file's wall time and its failures, and writes
// them as JSON lines to the file named by VP_TIMINGS (the lanes runner prints the table).
import { appendFileSync } from "node:fs";

interface Event {
  type: string;
  data: { name?: string; nesting?: number; file?: string; details?: { duration_ms?: number } };
}

export default async function* timingReporter(source: AsyncIterable<Event>): AsyncGenerator<string> {
  const out = process.env.VP_TIMINGS;
  const files = new Map<string, { ms: number; tests: number; failed: number }>();
  for await (const e of source) {
    if (e.type !== "test:pass" && e.type !== "test:fail") continue;
    const file = e.data.file;
    if (!file || e.data.nesting !== 0) continue;
    const f = files.get(file) ?? { ms: 0, tests: 0, failed: 0 };
    f.ms += e.data.details?.duration_ms ?? 0;
    f.tests++;
    if (e.type === "test:fail") f.failed++;
    files.set(file, f);
  }
  if (out) for (const [file, f] of files) appendFileSync(out, JSON.stringify({ file, ...f }) + "\n");
  yield "";
}
