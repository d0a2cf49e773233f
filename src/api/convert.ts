// VulnerabilityReport -> copa's native update manifest (`copa patch -s native`), and
// the counts the PatchJob status shows. Pure: no I/O.
import { createHash } from "node:crypto";
import { detectOS, type OSInfo } from "./os.ts";
import { compareVersions, isValidVersion } from "./version.ts";
import { parsePlatform, type VulnerabilityReport } from "./report.ts";
import type { LibraryFact } from "./library.ts";

/** The PatchJob CRD's limits on a package update (longer values could not be stored). */
const MAX_VERSION_LENGTH = 128;
const MAX_NAME_LENGTH = 253;

/** A value for a message: quoted and cut short. */
function cut(v: string): string {
  return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}...` : v);
}

/** copa's package name rule; anything else is rejected by copa, so we drop it here. */
const PACKAGE_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9.+\-:~_]*$/;

export interface UpdatePackage {
  name: string;
  installedVersion: string;
  fixedVersion: string;
  vulnerabilityID: string;
}

/** copa's v1alpha1 native manifest (v1alpha2 only when a platform variant must be carried). */
export interface UpdateManifest {
  apiVersion: "v1alpha1" | "v1alpha2";
  metadata: { os: { type: string; version: string }; config: { arch: string; variant?: string } };
  updates?: UpdatePackage[];
  osupdates?: Array<UpdatePackage & { type: string; class: "os-pkgs" }>;
}

/** One fixable finding: a CVE in a package with a fix newer than what is installed. */
export interface Finding {
  cve: string;
  packageName: string;
  installedVersion: string;
  fixedVersion: string;
}

export interface Counts {
  /** Every vulnerability in the report that VEX did not suppress. */
  total: number;
  /** os-pkgs findings with a fixed version: what copa can fix. */
  fixable: number;
  suppressed: number;
  /** os-pkgs findings with no fix published yet. */
  noFix: number;
  /** Language packages and binaries: copa does not patch them. */
  langPkgs: number;
  binary: number;
}

/** At most this many library findings are listed in a PatchJob's status (the CRD's limit). */
export const MAX_LIBRARY_FINDINGS = 200;
/** At most this many are kept per report to plan from (a few hundred bytes each). */
export const MAX_LIBRARY_FACTS = 1000;

/** The report's findings in language packages and binaries (npm, PyPI, Go, .NET, ...). */
export function libraryFindings(report: VulnerabilityReport): LibraryFact[] {
  const out: LibraryFact[] = [];
  for (const r of report.report.results ?? []) {
    if (r.class === "os-pkgs") continue;
    for (const v of r.vulnerabilities ?? []) {
      if (v.suppressed || !v.packageName || !v.installedVersion) continue;
      const fixedVersions = (v.fixedVersions ?? [])
        .flatMap((f) => f.split(","))
        .map((f) => f.trim().slice(0, 128))
        .filter(Boolean)
        .slice(0, 16);
      out.push({
        cve: v.cve.slice(0, 64),
        type: (r.type ?? r.class ?? "unknown").slice(0, 32),
        packageName: v.packageName.slice(0, 253),
        installedVersion: v.installedVersion.slice(0, 128),
        fixedVersions,
        ...(v.packagePath ? { path: v.packagePath.slice(0, 512) } : {}),
      });
    }
  }
  return out
    .sort((a, b) => a.packageName.localeCompare(b.packageName) || a.cve.localeCompare(b.cve))
    .slice(0, MAX_LIBRARY_FACTS);
}

export interface Conversion {
  os: OSInfo;
  arch: string;
  variant?: string;
  /** One per package, at the highest fixed version any of its CVEs needs. */
  updates: UpdatePackage[];
  /** CVE ids per package, for the status (copa's manifest carries one id per package). */
  findings: Finding[];
  counts: Counts;
  findingsHash: string;
}

export const ConversionProblem = {
  NoOSPackages: "NoOSPackages",
  UnknownOS: "UnknownOS",
  UnsupportedOS: "UnsupportedOS",
  InvalidPlatform: "InvalidPlatform",
  /** Fixes are listed, but none with a valid version and package name. */
  MalformedFindings: "MalformedFindings",
} as const;
export type ConversionProblem = (typeof ConversionProblem)[keyof typeof ConversionProblem];

export type ConversionResult =
  { ok: true; value: Conversion } | { ok: false; reason: ConversionProblem; message: string; counts: Counts };

export function countFindings(report: VulnerabilityReport): Counts {
  const c: Counts = { total: 0, fixable: 0, suppressed: 0, noFix: 0, langPkgs: 0, binary: 0 };
  for (const r of report.report.results ?? []) {
    for (const v of r.vulnerabilities ?? []) {
      if (v.suppressed) {
        c.suppressed++;
        continue;
      }
      c.total++;
      if (r.class === "os-pkgs") {
        if ((v.fixedVersions ?? []).length > 0 && v.packageName && v.installedVersion) c.fixable++;
        else c.noFix++;
      } else if (r.class === "lang-pkgs") c.langPkgs++;
      else c.binary++;
    }
  }
  return c;
}

export function convertReport(report: VulnerabilityReport): ConversionResult {
  const counts = countFindings(report);
  const osResults = (report.report.results ?? []).filter((r) => r.class === "os-pkgs");
  if (osResults.length === 0) {
    return {
      ok: false,
      reason: "NoOSPackages",
      message: "the report has no os-pkgs result: nothing copa can patch",
      counts,
    };
  }
  const detected = detectOS(osResults[0]!);
  if (!detected.ok) return { ok: false, reason: detected.reason, message: detected.message, counts };
  const platform = parsePlatform(report.imageMetadata.platform);
  if (!platform)
    return {
      ok: false,
      reason: "InvalidPlatform",
      message: `bad platform ${report.imageMetadata.platform}`,
      counts,
    };
  const os = detected.os;
  const cmp = (a: string, b: string): number => compareVersions(os.scheme, a, b);

  const findings: Finding[] = [];
  // Findings with a fix that cannot be used as it stands (a bad version or package
  // name): dropped, never passed to copa, and named when nothing usable is left.
  const malformed: string[] = [];
  let malformedCount = 0;
  const reject = (what: string) => {
    malformedCount++;
    if (malformed.length < 3) malformed.push(what);
  };
  let fixable = 0;
  for (const r of osResults) {
    for (const v of r.vulnerabilities ?? []) {
      if (v.suppressed || !v.packageName || !v.installedVersion) continue;
      const listed = (v.fixedVersions ?? [])
        .flatMap((f) => f.split(","))
        .map((f) => f.trim())
        .filter((f) => f);
      const candidates = listed.filter((f) => f.length <= MAX_VERSION_LENGTH && isValidVersion(os.scheme, f));
      if (candidates.length === 0) {
        if (listed.length > 0)
          reject(
            `${cut(v.cve)} in ${cut(v.packageName)}: fixed version ${cut(listed[0]!)} is not a ${os.scheme} version`,
          );
        continue;
      }
      fixable++;
      if (!PACKAGE_NAME_RE.test(v.packageName) || v.packageName.length > MAX_NAME_LENGTH) {
        reject(`${cut(v.cve)}: package name ${cut(v.packageName)} is not a package name`);
        continue;
      }
      if (v.installedVersion.length > MAX_VERSION_LENGTH || !isValidVersion(os.scheme, v.installedVersion)) {
        reject(
          `${cut(v.cve)} in ${v.packageName}: installed version ${cut(v.installedVersion)} is not a ${os.scheme} version`,
        );
        continue;
      }
      // Several fixed versions are fixes on different branches: the lowest one newer
      // than what is installed is the one on this image's branch.
      const newer = candidates.filter((f) => cmp(f, v.installedVersion!) > 0).sort(cmp);
      if (newer.length === 0) continue;
      findings.push({
        cve: v.cve,
        packageName: v.packageName,
        installedVersion: v.installedVersion,
        fixedVersion: newer[0]!,
      });
    }
  }
  const byPackage = new Map<string, UpdatePackage>();
  for (const f of findings) {
    const cur = byPackage.get(f.packageName);
    if (
      !cur ||
      cmp(f.fixedVersion, cur.fixedVersion) > 0 ||
      (cmp(f.fixedVersion, cur.fixedVersion) === 0 && f.cve < cur.vulnerabilityID)
    ) {
      byPackage.set(f.packageName, {
        name: f.packageName,
        installedVersion: f.installedVersion,
        fixedVersion: f.fixedVersion,
        vulnerabilityID: f.cve,
      });
    }
  }
  const updates = [...byPackage.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (updates.length === 0 && malformedCount > 0)
    return {
      ok: false,
      reason: "MalformedFindings",
      message: `no usable fix: ${malformedCount} findings with a fix are malformed, e.g. ${malformed.join("; ")}`,
      counts: { ...counts, fixable },
    };
  findings.sort((a, b) => a.packageName.localeCompare(b.packageName) || a.cve.localeCompare(b.cve));
  return {
    ok: true,
    value: {
      os,
      arch: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      updates,
      findings,
      counts: { ...counts, fixable },
      findingsHash: findingsHash(updates),
    },
  };
}

/**
 * A hash of what copa would change: package, installed and fixed version. Stable under
 * reordering and under anything else in the report (descriptions, labels,
 * resourceVersion, summary), so a rescan that finds the same fixes changes nothing.
 */
export function findingsHash(
  updates: ReadonlyArray<Pick<UpdatePackage, "name" | "installedVersion" | "fixedVersion">>,
): string {
  const lines = updates.map((u) => `${u.name}\u0000${u.installedVersion}\u0000${u.fixedVersion}`).sort();
  return "sha256:" + createHash("sha256").update(lines.join("\n")).digest("hex");
}

/** The native manifest copa reads with `-s native`. */
export function toUpdateManifest(c: Pick<Conversion, "os" | "arch" | "variant" | "updates">): UpdateManifest {
  // v1alpha1 has no variant field; arm64's "v8" is implied, other variants (arm/v7) need v1alpha2.
  const needsVariant = c.variant !== undefined && !(c.arch === "arm64" && c.variant === "v8");
  const metadata = {
    os: { type: c.os.type, version: c.os.version },
    config: { arch: c.arch, ...(needsVariant ? { variant: c.variant } : {}) },
  };
  if (needsVariant) {
    return {
      apiVersion: "v1alpha2",
      metadata,
      osupdates: c.updates.map((u) => ({ ...u, type: c.os.type, class: "os-pkgs" as const })),
    };
  }
  return { apiVersion: "v1alpha1", metadata, updates: c.updates.map((u) => ({ ...u })) };
}
