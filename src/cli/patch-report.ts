// The VulnerabilityReport files the patch command is given: read, checked, and turned
// into updates (bad input is a UsageError naming the file).
import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import {
  convertReport,
  type Counts,
  type LibraryFact,
  libraryFindings,
  type PackageUpdate,
  parseReport,
} from "../api/index.ts";

import { UsageError } from "../util/index.ts";

export interface CliReport {
  file: string;
  platform: string;
  os: { type: string; version: string };
  counts: Counts;
  updates: PackageUpdate[];
  /** The report's language-package findings (patched with --pkg-types library). */
  libraries: LibraryFact[];
}

export async function readReportFile(file: string): Promise<CliReport> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(file, "utf8"));
  } catch (err) {
    throw new UsageError(
      `cannot read the report ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message.split("\n")[0]}`,
    );
  }
  const report = parseReport(doc);
  if (!report.ok) throw new UsageError(`${file}: ${report.reason}: ${report.message}`);
  const conv = convertReport(report.value);
  if (!conv.ok) throw new UsageError(`${file}: ${conv.reason}: ${conv.message}`);
  const ids = new Map<string, string[]>();
  for (const f of conv.value.findings) ids.set(f.packageName, [...(ids.get(f.packageName) ?? []), f.cve]);
  return {
    file,
    platform: report.value.imageMetadata.platform,
    os: { type: conv.value.os.type, version: conv.value.os.version },
    counts: conv.value.counts,
    updates: conv.value.updates.map((u) => ({
      name: u.name,
      installedVersion: u.installedVersion,
      fixedVersion: u.fixedVersion,
      vulnerabilityIDs: [...new Set(ids.get(u.name) ?? [])].sort(),
    })),
    libraries: libraryFindings(report.value),
  };
}
