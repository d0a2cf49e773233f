// The sbomscanner VulnerabilityReport model (storage.sbomscanner.kubewarden.io/v1alpha1)
// and a parser that accepts what sbomscanner really produces (unknown fields are
// tolerated) and rejects what vuln-patcher cannot use, with a reason code.

import { isValidRegistryHost, isValidRepository, isValidTag } from "./imageref.ts";

export const REPORT_GROUP = "storage.sbomscanner.kubewarden.io";
export const REPORT_VERSION = "v1alpha1";
export const REPORT_PLURAL = "vulnerabilityreports";
export const REPORT_KIND = "VulnerabilityReport";

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string | Date;
  deletionTimestamp?: string | Date;
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string }>;
}

export interface ImageMetadata {
  /** Name of the sbomscanner Registry CR. */
  registry: string;
  /** host[:port] of the registry. */
  registryURI: string;
  repository: string;
  tag: string;
  /** os/arch[/variant], e.g. linux/arm64/v8. */
  platform: string;
  /** This platform's manifest digest. */
  digest: string;
  /** The index digest, for multi-arch images only. */
  indexDigest?: string;
}

export interface Vulnerability {
  cve: string;
  packageName?: string;
  purl?: string;
  installedVersion?: string;
  fixedVersions?: string[];
  severity?: string;
  suppressed?: boolean;
  title?: string;
  diffID?: string;
  /** Where a language package lives in the image (sbomscanner's packagePath, e.g. a METADATA or package.json). */
  packagePath?: string;
}

export interface ReportResult {
  target?: string;
  /** os-pkgs | lang-pkgs | binary */
  class?: string;
  /** OS family (alpine, debian, ...) or ecosystem (gobinary, npm, ...). */
  type?: string;
  vulnerabilities?: Vulnerability[];
}

export interface ReportSummary {
  critical?: number;
  high?: number;
  medium?: number;
  low?: number;
  unknown?: number;
  suppressed?: number;
}

export interface VulnerabilityReport {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  imageMetadata: ImageMetadata;
  report: { summary?: ReportSummary; results?: ReportResult[] };
}

export const ReportProblem = {
  NotAnObject: "NotAnObject",
  WrongKind: "WrongKind",
  MissingImageMetadata: "MissingImageMetadata",
  MissingDigest: "MissingDigest",
  InvalidDigest: "InvalidDigest",
  MissingRepository: "MissingRepository",
  MissingRegistryURI: "MissingRegistryURI",
  InvalidPlatform: "InvalidPlatform",
  InvalidImageReference: "InvalidImageReference",
  MissingReport: "MissingReport",
  MalformedResults: "MalformedResults",
} as const;
export type ReportProblem = (typeof ReportProblem)[keyof typeof ReportProblem];

export type ParseResult<T, R extends string> =
  { ok: true; value: T } | { ok: false; reason: R; message: string };

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fail<R extends string>(reason: R, message: string): { ok: false; reason: R; message: string } {
  return { ok: false, reason, message };
}

/** Parse a VulnerabilityReport object (already decoded from JSON or YAML). Never throws. */
export function parseReport(input: unknown): ParseResult<VulnerabilityReport, ReportProblem> {
  if (!isRecord(input)) return fail(ReportProblem.NotAnObject, "the report is not an object");
  if (input.kind !== undefined && input.kind !== REPORT_KIND) {
    return fail(ReportProblem.WrongKind, `kind is ${describe(input.kind)}, expected ${REPORT_KIND}`);
  }
  if (input.apiVersion !== undefined && input.apiVersion !== `${REPORT_GROUP}/${REPORT_VERSION}`) {
    return fail(
      ReportProblem.WrongKind,
      `apiVersion is ${describe(input.apiVersion)}, expected ${REPORT_GROUP}/${REPORT_VERSION}`,
    );
  }
  const meta = isRecord(input.metadata) ? (input.metadata as ObjectMeta) : {};
  const im = input.imageMetadata;
  if (!isRecord(im)) return fail(ReportProblem.MissingImageMetadata, "imageMetadata is missing");
  const str = (k: string): string => (typeof im[k] === "string" ? (im[k] as string) : "");
  if (!str("digest")) return fail(ReportProblem.MissingDigest, "imageMetadata.digest is missing");
  if (!DIGEST_RE.test(str("digest"))) {
    return fail(
      ReportProblem.InvalidDigest,
      `imageMetadata.digest ${quote(str("digest"))} is not a sha256 digest`,
    );
  }
  if (str("indexDigest") && !DIGEST_RE.test(str("indexDigest"))) {
    return fail(
      ReportProblem.InvalidDigest,
      `imageMetadata.indexDigest ${quote(str("indexDigest"))} is not a sha256 digest`,
    );
  }
  if (!str("repository")) return fail(ReportProblem.MissingRepository, "imageMetadata.repository is missing");
  if (!str("registryURI"))
    return fail(ReportProblem.MissingRegistryURI, "imageMetadata.registryURI is missing");
  // These become a registry address and copa's argv: anything outside the reference
  // grammar (a leading "-", whitespace, shell metacharacters, upper case) stops here.
  if (!isValidRegistryHost(str("registryURI")))
    return fail(
      ReportProblem.InvalidImageReference,
      `imageMetadata.registryURI ${quote(str("registryURI"))} is not a registry host[:port]`,
    );
  if (!isValidRepository(str("repository")))
    return fail(
      ReportProblem.InvalidImageReference,
      `imageMetadata.repository ${quote(str("repository"))} is not a repository path`,
    );
  if (str("tag") && !isValidTag(str("tag")))
    return fail(ReportProblem.InvalidImageReference, `imageMetadata.tag ${quote(str("tag"))} is not a tag`);
  if (!parsePlatform(str("platform"))) {
    return fail(
      ReportProblem.InvalidPlatform,
      `imageMetadata.platform ${quote(str("platform"))} is not os/arch[/variant]`,
    );
  }
  const report = input.report;
  if (!isRecord(report)) return fail(ReportProblem.MissingReport, "report is missing");
  if (report.results !== undefined && report.results !== null && !Array.isArray(report.results)) {
    return fail(ReportProblem.MalformedResults, "report.results is not a list");
  }
  const results: ReportResult[] = [];
  for (const [i, r] of ((report.results as unknown[] | null | undefined) ?? []).entries()) {
    if (!isRecord(r)) return fail(ReportProblem.MalformedResults, `report.results[${i}] is not an object`);
    if (r.vulnerabilities !== undefined && r.vulnerabilities !== null && !Array.isArray(r.vulnerabilities)) {
      return fail(ReportProblem.MalformedResults, `report.results[${i}].vulnerabilities is not a list`);
    }
    const vulns: Vulnerability[] = [];
    for (const [j, v] of ((r.vulnerabilities as unknown[] | null | undefined) ?? []).entries()) {
      if (!isRecord(v) || typeof v.cve !== "string") {
        return fail(ReportProblem.MalformedResults, `report.results[${i}].vulnerabilities[${j}] has no cve`);
      }
      if (v.fixedVersions !== undefined && v.fixedVersions !== null && !Array.isArray(v.fixedVersions)) {
        return fail(
          ReportProblem.MalformedResults,
          `report.results[${i}].vulnerabilities[${j}].fixedVersions is not a list`,
        );
      }
      vulns.push({
        cve: v.cve,
        packageName: optString(v.packageName),
        purl: optString(v.purl),
        installedVersion: optString(v.installedVersion),
        fixedVersions: ((v.fixedVersions as unknown[] | null | undefined) ?? []).filter(
          (x): x is string => typeof x === "string" && x !== "",
        ),
        severity: optString(v.severity),
        suppressed: v.suppressed === true,
        title: optString(v.title),
        diffID: optString(v.diffID),
        packagePath: optString(v.packagePath),
      });
    }
    results.push({
      target: optString(r.target),
      class: optString(r.class),
      type: optString(r.type),
      vulnerabilities: vulns,
    });
  }
  return {
    ok: true,
    value: {
      apiVersion: input.apiVersion as string | undefined,
      kind: input.kind as string | undefined,
      metadata: meta,
      imageMetadata: {
        registry: str("registry"),
        registryURI: str("registryURI"),
        repository: str("repository"),
        tag: str("tag"),
        platform: str("platform"),
        digest: str("digest"),
        ...(str("indexDigest") ? { indexDigest: str("indexDigest") } : {}),
      },
      report: { summary: isRecord(report.summary) ? (report.summary as ReportSummary) : undefined, results },
    },
  };
}

/** A value for an error message: quoted, and cut short so a huge field cannot flood a status. */
function quote(v: string): string {
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
}

function describe(v: unknown): string {
  return typeof v === "string" ? quote(v) : `a ${v === null ? "null" : Array.isArray(v) ? "list" : typeof v}`;
}

function optString(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export function parsePlatform(p: string): Platform | undefined {
  const m = /^([a-z0-9]+)\/([a-z0-9_]+)(?:\/([a-z0-9]+))?$/.exec(p);
  if (!m) return undefined;
  return { os: m[1]!, architecture: m[2]!, ...(m[3] ? { variant: m[3] } : {}) };
}
