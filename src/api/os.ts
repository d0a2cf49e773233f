// Which OS a report's image runs, derived from what sbomscanner gives (it has no OS
// field): the os-pkgs result's `type`, the "(<os> <version>)" suffix of its target,
// or the purl `distro=` qualifier.
import type { VersionScheme } from "./version.ts";
import type { ReportResult } from "./report.ts";

export interface OSInfo {
  /** copa's OS type, e.g. debian, alpine, azurelinux. */
  type: string;
  version: string;
  scheme: VersionScheme;
}

/** Trivy/sbomscanner OS family names -> copa's type and version scheme; null = copa cannot patch it. */
const FAMILIES: Record<string, { type: string; scheme: VersionScheme } | null> = {
  alpine: { type: "alpine", scheme: "apk" },
  debian: { type: "debian", scheme: "dpkg" },
  ubuntu: { type: "ubuntu", scheme: "dpkg" },
  "cbl-mariner": { type: "cbl-mariner", scheme: "rpm" },
  azurelinux: { type: "azurelinux", scheme: "rpm" },
  centos: { type: "centos", scheme: "rpm" },
  oracle: { type: "oracle", scheme: "rpm" },
  redhat: { type: "redhat", scheme: "rpm" },
  rocky: { type: "rocky", scheme: "rpm" },
  alma: { type: "alma", scheme: "rpm" },
  almalinux: { type: "alma", scheme: "rpm" },
  amazon: { type: "amazon", scheme: "rpm" },
  sles: { type: "sles", scheme: "rpm" },
  "suse linux enterprise server": { type: "sles", scheme: "rpm" },
  "opensuse-leap": { type: "opensuse-leap", scheme: "rpm" },
  "opensuse.leap": { type: "opensuse-leap", scheme: "rpm" },
  "opensuse-tumbleweed": { type: "opensuse-tumbleweed", scheme: "rpm" },
  "opensuse.tumbleweed": { type: "opensuse-tumbleweed", scheme: "rpm" },
  // Known to Trivy, not to copa v0.14: reported as unsupported rather than unknown.
  wolfi: null,
  chainguard: null,
  photon: null,
  fedora: null,
  bottlerocket: null,
  echo: null,
  minimos: null,
};

export type OSDetection =
  { ok: true; os: OSInfo } | { ok: false; reason: "UnknownOS" | "UnsupportedOS"; message: string };

/** The "(alpine 3.11.3)" suffix of an os-pkgs target. */
function fromTarget(target: string | undefined): { family: string; version: string } | undefined {
  const m = /\(([A-Za-z][A-Za-z0-9 ._-]*?) ([0-9][A-Za-z0-9._~+-]*)\)\s*$/.exec(target ?? "");
  return m ? { family: m[1]!.toLowerCase(), version: m[2]! } : undefined;
}

/** The purl distro= qualifier: "3.11.3" (Alpine) or "debian-12.5". */
function fromPurl(purl: string | undefined): { family?: string; version: string } | undefined {
  const q = /[?&]distro=([^&#]+)/.exec(purl ?? "");
  if (!q) return undefined;
  const distro = decodeURIComponent(q[1]!);
  const m = /^([a-z][a-z.-]*?)-([0-9].*)$/.exec(distro);
  return m ? { family: m[1]!, version: m[2]! } : /^[0-9]/.test(distro) ? { version: distro } : undefined;
}

export function detectOS(result: ReportResult): OSDetection {
  const target = fromTarget(result.target);
  const purl = result.vulnerabilities?.map((v) => fromPurl(v.purl)).find((x) => x !== undefined);
  const family = (result.type ?? target?.family ?? purl?.family ?? "").toLowerCase().trim();
  if (!family) return { ok: false, reason: "UnknownOS", message: "the os-pkgs result names no OS family" };
  if (!(family in FAMILIES))
    return { ok: false, reason: "UnknownOS", message: `unknown OS family ${JSON.stringify(family)}` };
  const known = FAMILIES[family];
  if (!known) return { ok: false, reason: "UnsupportedOS", message: `copa cannot patch ${family} images` };
  const version =
    (target && target.family.replace(/\s+/g, "-") === family.replace(/\s+/g, "-")
      ? target.version
      : undefined) ??
    target?.version ??
    purl?.version;
  if (!version)
    return { ok: false, reason: "UnknownOS", message: `no ${family} version in the target or purls` };
  return { ok: true, os: { type: known.type, version, scheme: known.scheme } };
}
