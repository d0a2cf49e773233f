// Pure planning and verification against a package database: which updates are still
// needed before copa runs (so no copa run without a change to make), and which were
// made after it ran (so success is measured, never assumed).
import { compareVersions, type PackageUpdate, type VersionScheme } from "../api/index.ts";
import type { PackageDB } from "../registry/index.ts";

export interface Plan {
  /** Updates still needed: the package is installed at a version below the fix. */
  needed: PackageUpdate[];
  /** Already at or above the fixed version in the source image. */
  satisfied: PackageUpdate[];
  /** Not installed at all (removed, or a name the image does not have): copa would fail on them. */
  absent: PackageUpdate[];
}

export function schemeFor(db: PackageDB, osType?: string): VersionScheme | undefined {
  if (db.format === "dpkg") return "dpkg";
  if (db.format === "apk") return "apk";
  if (osType && ["debian", "ubuntu"].includes(osType)) return "dpkg";
  if (osType === "alpine") return "apk";
  return undefined;
}

export function planUpdates(updates: PackageUpdate[], db: PackageDB, osType?: string): Plan {
  const scheme = schemeFor(db, osType);
  const plan: Plan = { needed: [], satisfied: [], absent: [] };
  if (!scheme || db.format === "unknown") {
    // No package database we can read (an RPM image, say): trust the report and let copa decide.
    plan.needed = [...updates];
    return plan;
  }
  for (const u of updates) {
    const installed = db.packages.get(u.name);
    if (installed === undefined) plan.absent.push(u);
    else if (compareVersions(scheme, installed, u.fixedVersion) >= 0) plan.satisfied.push(u);
    else plan.needed.push({ ...u, installedVersion: installed });
  }
  return plan;
}

export interface Verification {
  fixed: PackageUpdate[];
  remaining: PackageUpdate[];
  fixedCVEs: string[];
  /** Packages whose version changed between the two images (what copa really did). */
  changed: Array<{ name: string; from: string; to: string }>;
}

/** Compare the patched image's packages with the plan (and with the source image). */
export function verifyUpdates(
  planned: PackageUpdate[],
  after: PackageDB,
  before?: PackageDB,
  osType?: string,
): Verification {
  const scheme = schemeFor(after, osType) ?? "dpkg";
  const fixed: PackageUpdate[] = [];
  const remaining: PackageUpdate[] = [];
  for (const u of planned) {
    const v = after.packages.get(u.name);
    if (v !== undefined && compareVersions(scheme, v, u.fixedVersion) >= 0) fixed.push(u);
    else remaining.push(u);
  }
  const changed: Verification["changed"] = [];
  if (before) {
    for (const [name, to] of after.packages) {
      const from = before.packages.get(name);
      if (from !== undefined && from !== to) changed.push({ name, from, to });
    }
    changed.sort((a, b) => a.name.localeCompare(b.name));
  }
  const fixedCVEs = [...new Set(fixed.flatMap((u) => u.vulnerabilityIDs ?? []))].sort();
  return { fixed, remaining, fixedCVEs, changed };
}
