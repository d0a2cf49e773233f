// What the patch command prints: a before/after table per package (or per platform of
// an index), as text or JSON.
import {
  type Counts,
  formatImageRef,
  type ImageRef,
  type LibraryFinding,
  type PackageUpdate,
  PatchError,
} from "../api/index.ts";
import { type PatchImageResult, type PatchIndexResult, planUpdates } from "../patch/index.ts";
import { readPackageDB, type RegistryClient } from "../registry/index.ts";
import type { CliReport } from "./patch-report.ts";

export interface PatchSummary {
  image: string;
  result: "patched" | "no-op" | "planned";
  patchedImage?: string;
  digest?: string;
  adopted?: boolean;
  before: { total: number; fixable: number };
  after: { fixed: number; remaining: number };
  packages: Array<{
    name: string;
    installed: string;
    fixed: string;
    now?: string;
    status: "fixed" | "remaining" | "already" | "planned";
    cves: string[];
  }>;
  message?: string;
  /** Language-package findings, each with what happened to it (--pkg-types library). */
  libraries?: LibraryFinding[];
}

type Row = PatchSummary["packages"][number];

/** One package's line of the table. */
function row(u: PackageUpdate, status: Row["status"], now?: string): Row {
  return {
    name: u.name,
    installed: u.installedVersion,
    fixed: u.fixedVersion,
    ...(now !== undefined ? { now } : {}),
    status,
    cves: u.vulnerabilityIDs ?? [],
  };
}

export async function planOnly(
  registry: RegistryClient,
  source: ImageRef,
  updates: PackageUpdate[] | undefined,
  os: { type: string } | undefined,
  counts: Counts | undefined,
): Promise<PatchSummary> {
  const src = await registry.manifestFor(source);
  if (!src) throw new PatchError("ImageNotFound", `source image ${formatImageRef(source)} not found`);
  const db = await readPackageDB(registry, source, src.manifest.layers);
  const plan = planUpdates(updates ?? [], db, os?.type);
  return {
    image: formatImageRef(source),
    result: "planned",
    before: { total: counts?.total ?? 0, fixable: counts?.fixable ?? 0 },
    after: { fixed: 0, remaining: counts?.fixable ?? 0 },
    packages: [
      ...plan.needed.map((u) => row(u, "planned")),
      ...plan.satisfied.map((u) => ({ ...row(u, "already"), installed: db.packages.get(u.name) ?? "" })),
    ],
    message: updates
      ? `dry run: ${plan.needed.length} updates would be made; nothing was built`
      : "dry run without a report: copa would update every package; nothing was built",
  };
}

export function summarize(
  image: string,
  r: PatchImageResult,
  updates: PackageUpdate[] | undefined,
  counts: Counts | undefined,
): PatchSummary {
  const findings = (u: PackageUpdate) => Math.max(1, u.vulnerabilityIDs?.length ?? 0);
  const fixable = counts?.fixable ?? (updates ?? []).reduce((n, u) => n + findings(u), 0);
  if (r.kind === "noop") {
    return {
      image,
      result: "no-op",
      before: { total: counts?.total ?? 0, fixable },
      after: { fixed: 0, remaining: fixable },
      packages: (r.plan?.satisfied ?? []).map((u) => row(u, "already", r.before.packages.get(u.name))),
      message: r.message,
    };
  }
  const after = new Map(r.verification.changed.map((c) => [c.name, c.to]));
  const fixedFindings = updates
    ? r.verification.fixed.reduce((n, u) => n + findings(u), 0)
    : r.verification.fixed.length;
  return {
    image,
    result: "patched",
    patchedImage: r.patchedRef,
    digest: r.patchedDigest,
    adopted: r.adopted,
    before: { total: counts?.total ?? 0, fixable },
    after: { fixed: fixedFindings, remaining: Math.max(0, fixable - fixedFindings) },
    packages: [
      ...r.verification.fixed.map((u) => row(u, "fixed", after.get(u.name) ?? u.fixedVersion)),
      ...r.verification.remaining.map((u) => row(u, "remaining", after.get(u.name) ?? u.installedVersion)),
      ...(r.plan?.satisfied ?? []).map((u) => row(u, "already", r.before.packages.get(u.name))),
    ],
  };
}

export function renderTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

export function renderSummary(s: PatchSummary): string {
  const head =
    s.result === "patched"
      ? `${s.adopted ? "Already patched (adopted the existing push)" : "Patched"}: ${s.patchedImage}@${s.digest}`
      : s.result === "no-op"
        ? `No-op: nothing to update (${s.message})`
        : `Plan only: ${s.message}`;
  const rows = [["PACKAGE", "CVE", "INSTALLED", "FIXED IN", "NOW", "STATUS"]];
  for (const p of s.packages) {
    const cves = p.cves.length ? p.cves : ["-"];
    cves.forEach((c, i) =>
      rows.push([
        i === 0 ? p.name : "",
        c,
        i === 0 ? p.installed : "",
        i === 0 ? p.fixed : "",
        i === 0 ? (p.now ?? "") : "",
        i === 0 ? p.status : "",
      ]),
    );
  }
  const totals = `vulnerabilities: ${s.before.total} total, ${s.before.fixable} fixable -> ${s.after.fixed} fixed, ${s.after.remaining} fixable remaining`;
  const libs = s.libraries?.length
    ? "\n" +
      renderTable([
        ["LIBRARY", "CVE", "INSTALLED", "FIXED IN", "RESULT", "WHY"],
        ...s.libraries.map((f) => [
          f.packageName,
          f.cve,
          f.installedVersion,
          f.fixedVersion ?? "-",
          f.reason,
          f.message.length > 100 ? `${f.message.slice(0, 97)}...` : f.message,
        ]),
      ])
    : "";
  return `${head}\n${totals}\n\n${s.packages.length ? renderTable(rows) : "(no package changes)\n"}${libs}`;
}

export interface IndexSummary {
  image: string;
  result: "patched" | "no-op" | "failed";
  patchedImage: string;
  digest?: string;
  adopted: boolean;
  message: string;
  platforms: Array<{
    platform: string;
    result: string;
    sourceDigest: string;
    digest?: string;
    /** Findings before, from the platform's report (undefined without one). */
    fixableBefore?: number;
    fixed: number;
    packagesUpdated: number;
    message: string;
  }>;
}

export function summarizeIndex(image: string, r: PatchIndexResult, reports: CliReport[]): IndexSummary {
  return {
    image,
    result: r.kind === "noop" ? "no-op" : r.kind,
    patchedImage: r.patchedRef,
    ...(r.indexDigest ? { digest: r.indexDigest } : {}),
    adopted: r.adopted,
    message: r.message,
    platforms: r.platforms.map((o) => {
      const rep = reports.find((x) => x.platform === o.platform);
      const fixed = o.verification?.fixed ?? [];
      return {
        platform: o.platform,
        result: o.result,
        sourceDigest: o.sourceDigest,
        ...(o.digest ? { digest: o.digest } : {}),
        ...(rep ? { fixableBefore: rep.counts.fixable } : {}),
        fixed: rep
          ? fixed.reduce((n, u) => n + Math.max(1, u.vulnerabilityIDs?.length ?? 0), 0)
          : fixed.length,
        packagesUpdated: fixed.length,
        message: o.message,
      };
    }),
  };
}

export function renderIndexSummary(s: IndexSummary): string {
  const head =
    s.result === "patched"
      ? `${s.adopted ? "Already patched (adopted the existing index)" : "Patched index"}: ${s.patchedImage}@${s.digest}`
      : s.result === "no-op"
        ? `No-op: ${s.message}`
        : `Failed, nothing published under ${s.patchedImage}: ${s.message}`;
  const rows = [["PLATFORM", "RESULT", "FIXABLE BEFORE", "FIXED", "PACKAGES", "DIGEST"]];
  for (const p of s.platforms)
    rows.push([
      p.platform,
      p.result,
      p.fixableBefore === undefined ? "-" : String(p.fixableBefore),
      String(p.fixed),
      String(p.packagesUpdated),
      p.digest ? p.digest.slice(0, 19) : "-",
    ]);
  return `${head}\n\n${renderTable(rows)}`;
}
