// Library updates around a copa run, pure: which are still needed in the source image
// (no copa run for what is already there), the report copa reads for them (its Trivy
// format: the native manifest has no package paths), and which the patched image
// really holds afterwards.
import {
  compareLibraryVersions,
  isLibraryVersion,
  type LibraryUpdate,
  type PackageUpdate,
} from "../api/index.ts";

export interface LibraryPlanResult {
  needed: LibraryUpdate[];
  /** At or above the fix in the source image already. */
  satisfied: LibraryUpdate[];
  /** Not where the report said (or nowhere in the image): not handed to copa. */
  absent: LibraryUpdate[];
}

/** The lowest of the versions found (a package in two places is fixed when both are). */
function lowest(u: LibraryUpdate, versions: string[]): string | undefined {
  const valid = versions.filter((v) => isLibraryVersion(u.type, v));
  return valid.sort((a, b) => compareLibraryVersions(u.type, a, b))[0];
}

/** `found[i]`: the versions of `updates[i]` in the source image (readLibraries). */
export function planLibraryUpdates(updates: LibraryUpdate[], found: string[][]): LibraryPlanResult {
  const plan: LibraryPlanResult = { needed: [], satisfied: [], absent: [] };
  updates.forEach((u, i) => {
    const v = lowest(u, found[i] ?? []);
    if (v === undefined) plan.absent.push(u);
    else if (compareLibraryVersions(u.type, v, u.fixedVersion) >= 0) plan.satisfied.push(u);
    else plan.needed.push({ ...u, installedVersion: v });
  });
  return plan;
}

export interface LibraryVerification {
  fixed: Array<LibraryUpdate & { version: string }>;
  remaining: Array<LibraryUpdate & { version?: string }>;
  fixedCVEs: string[];
}

/** `found[i]`: the versions of `planned[i]` in the patched image. */
export function verifyLibraryUpdates(planned: LibraryUpdate[], found: string[][]): LibraryVerification {
  const out: LibraryVerification = { fixed: [], remaining: [], fixedCVEs: [] };
  planned.forEach((u, i) => {
    const v = lowest(u, found[i] ?? []);
    if (v !== undefined && compareLibraryVersions(u.type, v, u.fixedVersion) >= 0)
      out.fixed.push({ ...u, version: v });
    else out.remaining.push({ ...u, ...(v !== undefined ? { version: v } : {}) });
  });
  out.fixedCVEs = [...new Set(out.fixed.flatMap((u) => u.vulnerabilityIDs ?? []))].sort();
  return out;
}

/** The part of a Trivy JSON report copa v0.14 reads (pkg/report/trivy.go). */
export interface TrivyReport {
  SchemaVersion: 2;
  ArtifactName: string;
  ArtifactType: "container_image";
  Metadata: {
    OS: { Family: string; Name: string };
    ImageConfig: { architecture: string; variant?: string };
  };
  Results: Array<{
    Target: string;
    Class: "os-pkgs" | "lang-pkgs";
    Type: string;
    Vulnerabilities: Array<{
      VulnerabilityID: string;
      PkgName: string;
      PkgPath?: string;
      InstalledVersion: string;
      FixedVersion: string;
    }>;
  }>;
}

/** The report that hands copa OS and library updates together (`-s trivy --pkg-types ...`). */
export function trivyReport(
  artifact: string,
  os: { type: string; version: string },
  arch: { architecture: string; variant?: string },
  osUpdates: PackageUpdate[],
  libraries: LibraryUpdate[],
): TrivyReport {
  const rows = (
    u: { name: string; installedVersion: string; fixedVersion: string; vulnerabilityIDs?: string[] },
    path?: string,
  ) =>
    (u.vulnerabilityIDs?.length ? u.vulnerabilityIDs : [`VP-${u.name}`]).map((id) => ({
      VulnerabilityID: id,
      PkgName: u.name,
      ...(path ? { PkgPath: path } : {}),
      InstalledVersion: u.installedVersion,
      FixedVersion: u.fixedVersion,
    }));
  const results: TrivyReport["Results"] = [];
  if (osUpdates.length)
    results.push({
      Target: `${artifact} (${os.type} ${os.version})`,
      Class: "os-pkgs",
      Type: os.type,
      Vulnerabilities: osUpdates.flatMap((u) => rows(u)),
    });
  for (const type of [...new Set(libraries.map((l) => l.type))].sort())
    results.push({
      Target: type === "node-pkg" ? "Node.js" : "Python",
      Class: "lang-pkgs",
      Type: type,
      Vulnerabilities: libraries.filter((l) => l.type === type).flatMap((l) => rows(l, l.path)),
    });
  return {
    SchemaVersion: 2,
    ArtifactName: artifact,
    ArtifactType: "container_image",
    Metadata: {
      OS: { Family: os.type, Name: os.version },
      ImageConfig: { architecture: arch.architecture, ...(arch.variant ? { variant: arch.variant } : {}) },
    },
    Results: results,
  };
}

/**
 * copa's own words about a library it could not update, from the end of its output: the
 * package manager's error naming it (pip's or npm's `ERROR:` line inside the BuildKit
 * step, its `#4 0.373` prefix dropped), else copa's last error line naming it, else the
 * language manager's error.
 */
export function copaLibraryReason(outputTail: string, name: string): string | undefined {
  const lines = outputTail.split("\n").map((l) =>
    l
      .replace(/^time="[^"]*"\s+/, "")
      .replace(/^#\d+ \d+(\.\d+)? /, "")
      .trim(),
  );
  const tool = lines.filter((l) => /^(ERROR|npm ERR!|npm error)/.test(l) && l.includes(name));
  const named = lines.filter((l) => l.includes(name) && /err|fail|not|unable|cannot/i.test(l));
  const general = lines.filter(
    (l) => /language manager|langmgr|\bpip3?\b|\bnpm\b/i.test(l) && /\b(err|error|fail|failed)\b/i.test(l),
  );
  const line = tool.at(-1) ?? named.at(-1) ?? general.at(-1);
  return line?.slice(0, 400);
}
