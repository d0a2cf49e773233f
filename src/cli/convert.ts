// vuln-patcher convert <file>: a VulnerabilityReport (YAML or JSON, a full object) ->
// copa's native update manifest on stdout.
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { convertReport, parseReport, toUpdateManifest } from "../api/index.ts";

import { UsageError } from "../util/index.ts";
import { parse } from "./args.ts";

export const convertUsage = `Usage: vuln-patcher convert <report.yaml|report.json|->

Reads a sbomscanner VulnerabilityReport and prints copa's native update manifest
(copa patch -s native -r <file>) as JSON on stdout. A summary goes to stderr.
Exit 2 with a one-line reason when the report cannot be used.`;

export async function convertCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { summary: { type: "boolean" } }, true);
  if (values.help) {
    process.stdout.write(convertUsage + "\n");
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("convert takes exactly one file (or - for stdin)");
  const file = positionals[0]!;
  let text: string;
  try {
    text = file === "-" ? await readStdin() : await readFile(file, "utf8");
  } catch (err) {
    throw new UsageError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new UsageError(`${file} is not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`);
  }
  const report = parseReport(doc);
  if (!report.ok) throw new UsageError(`${file}: ${report.reason}: ${report.message}`);
  const conv = convertReport(report.value);
  if (!conv.ok) throw new UsageError(`${file}: ${conv.reason}: ${conv.message}`);
  process.stdout.write(JSON.stringify(toUpdateManifest(conv.value), null, 2) + "\n");
  const c = conv.value.counts;
  process.stderr.write(
    `${conv.value.updates.length} package updates for ${c.fixable} fixable findings ` +
      `(${c.total} total: ${c.noFix} without a fix, ${c.langPkgs} language packages, ${c.binary} binaries, ${c.suppressed} suppressed by VEX)\n`,
  );
  return 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
