// Language libraries (Python and Node.js packages): which of a report's findings become
// copa library updates under a policy, and which are listed with why not. Pure: the
// versions are compared by the ecosystems' own rules (semver for npm, PEP 440 for PyPI)
// through kept libraries, never by string order.
import * as pep440 from "@renovatebot/pep440";
import semver from "semver";

/** The report's package types copa updates here (its Go rebuild and .NET restore are not used). */
export const LibraryType = { Python: "python-pkg", Node: "node-pkg" } as const;
export type LibraryType = (typeof LibraryType)[keyof typeof LibraryType];
const PATCHABLE: readonly string[] = Object.values(LibraryType);

export type PatchLevel = "patch" | "minor" | "major";
export type PackageType = "os" | "library";
/** @default ["os"]: libraries only once a policy opts in (copa's library support is experimental). */
export const DEFAULT_PACKAGE_TYPES: readonly PackageType[] = ["os"];
/** @default "patch" */
export const DEFAULT_LIBRARY_PATCH_LEVEL: PatchLevel = "patch";
const LEVEL_RANK: Record<PatchLevel, number> = { patch: 0, minor: 1, major: 2 };

/** What happens to a library finding; the PatchJob's status.libraries says it per finding. */
export const LibraryReason = {
  /** Handed to copa with this patch. */
  Planned: "Planned",
  /** The patched image holds the package at or above the fix. */
  Fixed: "Fixed",
  /** copa ran, but the patched image holds the package below the fix. */
  NotFixed: "NotFixed",
  /** A type or layout copa cannot update here, or copa's library update failed. */
  NotPatchable: "NotPatchable",
  /** The fix is a bigger version jump than the policy's libraryPatchLevel allows. */
  BeyondPatchLevel: "BeyondPatchLevel",
  /** The policy patches OS packages only (packageTypes). */
  LibraryNotPatched: "LibraryNotPatched",
  NoFixPublished: "NoFixPublished",
} as const;
export type LibraryReason = (typeof LibraryReason)[keyof typeof LibraryReason];

/** A language-package finding as the report gives it (the controller keeps these per report). */
export interface LibraryFact {
  cve: string;
  /** The report's result type: node-pkg, python-pkg, gobinary, jar, ... */
  type: string;
  packageName: string;
  installedVersion: string;
  /** Every fixed version the report lists (fixes on several branches). */
  fixedVersions: string[];
  /** Where the report found the package in the image (a package.json or a METADATA file). */
  path?: string;
}

/** One finding in the PatchJob's status: what happens to it, and why. */
export interface LibraryFinding {
  cve: string;
  type: string;
  packageName: string;
  installedVersion: string;
  fixedVersion?: string;
  path?: string;
  reason: LibraryReason;
  message: string;
}

/** One library update copa makes (spec.libraryUpdates): one per package and place. */
export interface LibraryUpdate {
  type: LibraryType;
  name: string;
  installedVersion: string;
  fixedVersion: string;
  path?: string;
  vulnerabilityIDs?: string[];
}

export interface LibrarySettings {
  /** @default DEFAULT_PACKAGE_TYPES */
  packageTypes?: readonly PackageType[];
  /** @default DEFAULT_LIBRARY_PATCH_LEVEL */
  patchLevel?: PatchLevel;
}

export function isLibraryType(t: string): t is LibraryType {
  return PATCHABLE.includes(t);
}

export function isLibraryVersion(type: LibraryType, v: string): boolean {
  if (!v || v.length > 128) return false;
  return type === LibraryType.Node ? semver.valid(v) !== null : pep440.valid(v) !== null;
}

/** Negative, zero or positive, like a sort comparator; both versions must be valid. */
export function compareLibraryVersions(type: LibraryType, a: string, b: string): number {
  return type === LibraryType.Node ? semver.compare(a, b) : pep440.compare(a, b);
}

/** How big the jump from one version to another is: same major.minor = patch, same major = minor. */
export function versionJump(type: LibraryType, from: string, to: string): PatchLevel {
  const [maj, min] =
    type === LibraryType.Node
      ? [semver.major, semver.minor]
      : [(v: string) => pep440.major(v), (v: string) => pep440.minor(v)];
  if (maj(from) !== maj(to)) return "major";
  return min(from) === min(to) ? "patch" : "minor";
}

// npm's and PyPI's name rules; a path the report gives must stay inside the image.
const NAME_RE: Record<LibraryType, RegExp> = {
  "node-pkg": /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/,
  "python-pkg": /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/,
};
const PATH_RE = /^[A-Za-z0-9_@+][A-Za-z0-9._@+/-]*$/;

export function isSafeLibraryPath(p: string): boolean {
  return p.length <= 512 && PATH_RE.test(p) && !p.split("/").some((s) => s === ".." || s === ".");
}

/** Why a library update cannot be handed to copa (a PatchJob written by hand is checked too). */
export function libraryUpdateProblem(u: LibraryUpdate): string | undefined {
  if (!isLibraryType(u.type)) return `type ${JSON.stringify(u.type)} is not python-pkg or node-pkg`;
  if (!NAME_RE[u.type].test(u.name) || u.name.length > 214)
    return `${JSON.stringify(u.name.slice(0, 60))} is not a ${u.type} name`;
  for (const v of [u.installedVersion, u.fixedVersion])
    if (!isLibraryVersion(u.type, v)) return `${JSON.stringify(v.slice(0, 60))} is not a ${u.type} version`;
  if (u.path !== undefined && !isSafeLibraryPath(u.path)) return "its path is not a plain relative path";
  return undefined;
}

/** At most this many library updates in one patch (the CRD's limit on spec.libraryUpdates). */
export const MAX_LIBRARY_UPDATES = 500;

export interface LibraryPlan {
  updates: LibraryUpdate[];
  /** Every finding, in the report's order, with what happens to it. */
  findings: LibraryFinding[];
}

/**
 * The library updates a policy makes of a report's findings, and every finding listed
 * with what happens to it. `index`: the image is a platform of a multi-arch index, which
 * is patched as a whole with OS updates only.
 */
export function planLibraries(facts: readonly LibraryFact[], s: LibrarySettings, index = false): LibraryPlan {
  const on = (s.packageTypes ?? DEFAULT_PACKAGE_TYPES).includes("library");
  const level = s.patchLevel ?? DEFAULT_LIBRARY_PATCH_LEVEL;
  const findings: LibraryFinding[] = [];
  const chosen = new Map<string, { u: LibraryUpdate; cves: Array<{ i: number; fix: string }> }>();
  for (const f of facts) {
    const base = {
      cve: f.cve,
      type: f.type,
      packageName: f.packageName,
      installedVersion: f.installedVersion,
      ...(f.path ? { path: f.path } : {}),
    };
    const say = (reason: LibraryReason, message: string, fixedVersion = f.fixedVersions[0]) =>
      findings.push({ ...base, ...(fixedVersion ? { fixedVersion } : {}), reason, message });
    if (f.fixedVersions.length === 0) {
      say(LibraryReason.NoFixPublished, `no fixed version of ${f.packageName} is published yet`);
      continue;
    }
    const why = unpatchable(f, on, index);
    if (why) {
      say(why.reason, why.message);
      continue;
    }
    const type = f.type as LibraryType;
    const newer = f.fixedVersions
      .filter((v) => isLibraryVersion(type, v) && compareLibraryVersions(type, v, f.installedVersion) > 0)
      .sort((a, b) => compareLibraryVersions(type, a, b));
    const fix = newer.find((v) => LEVEL_RANK[versionJump(type, f.installedVersion, v)] <= LEVEL_RANK[level]);
    if (!fix) {
      if (newer.length === 0)
        say(LibraryReason.NotPatchable, `no listed fix is newer than ${f.installedVersion}`);
      else
        say(
          LibraryReason.BeyondPatchLevel,
          `the fix ${newer[0]} is a ${versionJump(type, f.installedVersion, newer[0]!)} update from ${f.installedVersion}; the policy allows ${level} updates (libraryPatchLevel): update it in the image's build`,
          newer[0],
        );
      continue;
    }
    const key = `${type}\u0000${f.packageName}\u0000${f.path ?? ""}`;
    const cur = chosen.get(key) ?? {
      u: {
        type,
        name: f.packageName,
        installedVersion: f.installedVersion,
        fixedVersion: fix,
        ...(f.path ? { path: f.path } : {}),
      },
      cves: [],
    };
    if (compareLibraryVersions(type, fix, cur.u.fixedVersion) > 0) cur.u.fixedVersion = fix;
    cur.cves.push({ i: findings.length, fix });
    chosen.set(key, cur);
    say(LibraryReason.Planned, "", fix);
  }
  const updates: LibraryUpdate[] = [];
  for (const { u, cves } of chosen.values()) {
    for (const { i } of cves)
      findings[i]!.message = `copa updates ${u.name} from ${u.installedVersion} to ${u.fixedVersion}`;
    updates.push({ ...u, vulnerabilityIDs: [...new Set(cves.map((c) => findings[c.i]!.cve))].sort() });
  }
  updates.sort((a, b) => a.name.localeCompare(b.name) || (a.path ?? "").localeCompare(b.path ?? ""));
  // Over the CRD's limit: the rest is listed, not dropped.
  for (const u of updates.splice(MAX_LIBRARY_UPDATES))
    for (const f of findings)
      if (
        f.reason === LibraryReason.Planned &&
        f.type === u.type &&
        f.packageName === u.name &&
        f.path === u.path
      ) {
        f.reason = LibraryReason.NotPatchable;
        f.message = `more than ${MAX_LIBRARY_UPDATES} library updates in one patch; update ${u.name} to ${u.fixedVersion} in the image's build`;
      }
  return { updates, findings };
}

function unpatchable(
  f: LibraryFact,
  on: boolean,
  index: boolean,
): { reason: LibraryReason; message: string } | undefined {
  const fix = f.fixedVersions[0];
  const instead = `update ${f.packageName} to ${fix} in the image's build`;
  if (!isLibraryType(f.type))
    return {
      reason: LibraryReason.NotPatchable,
      message: `a ${f.type} package: vuln-patcher has copa update Python and Node.js packages only; ${instead}`,
    };
  if (!on)
    return {
      reason: LibraryReason.LibraryNotPatched,
      message: `a ${f.type} package: the policy patches OS packages only (packageTypes: [os, library] patches it); or ${instead}`,
    };
  if (index)
    return {
      reason: LibraryReason.NotPatchable,
      message: `a platform of a multi-arch index, which is patched with OS updates only; ${instead}`,
    };
  if (!NAME_RE[f.type].test(f.packageName) || f.packageName.length > 214)
    return {
      reason: LibraryReason.NotPatchable,
      message: `${JSON.stringify(f.packageName)} is not a ${f.type} name`,
    };
  if (!isLibraryVersion(f.type, f.installedVersion))
    return {
      reason: LibraryReason.NotPatchable,
      message: `installed version ${JSON.stringify(f.installedVersion.slice(0, 60))} cannot be compared`,
    };
  if (f.path !== undefined && !isSafeLibraryPath(f.path))
    return {
      reason: LibraryReason.NotPatchable,
      message: `the package's path in the report is not a plain relative path`,
    };
  return undefined;
}
