// A VulnerabilityReport for the vulnerable test image built from real data only: the
// packages the image has at versions older than bookworm-security's, the fixed
// versions from bookworm-security, and the CVE (or GHSA) ids from the Debian changelogs
// of the fixed packages. What sbomscanner would report for this image, without Trivy.
import { createHash } from "node:crypto";
import { compareDpkg, parseImageRef, REPORT_GROUP, REPORT_KIND, REPORT_VERSION } from "../api/index.ts";
import { readPackageDB } from "../registry/index.ts";
import { securityPackages, securityUpdates } from "./debian.ts";
import { testRegistryClient } from "./registry.ts";

export interface HonestReportInput {
  name: string;
  namespace: string;
  registryURI: string;
  repository: string;
  tag: string;
  digest: string;
  /** The image's installed packages (from its dpkg status). */
  installed: Map<string, string>;
  debianVersion?: string;
  /** @default linux/amd64 */
  platform?: string;
  /** For one platform of a multi-arch index. */
  indexDigest?: string;
}

export async function honestReport(i: HonestReportInput): Promise<Record<string, unknown>> {
  const sec = await securityPackages();
  const upgradable = [...i.installed]
    .filter(([name, v]) => sec.has(name) && compareDpkg(sec.get(name)!.version, v) > 0)
    .map(([name]) => name)
    .sort();
  const updates = await securityUpdates(upgradable, i.installed);
  const version = i.debianVersion ?? "12";
  const vulnerabilities = updates.flatMap((u) =>
    u.vulnerabilityIDs.map((id) => ({
      cve: id,
      packageName: u.name,
      purl: `pkg:deb/debian/${u.name}@${u.installedVersion}?arch=${(i.platform ?? "linux/amd64").split("/")[1]}&distro=debian-${version}`,
      installedVersion: u.installedVersion,
      fixedVersions: [u.fixedVersion],
      severity: "UNKNOWN",
      suppressed: false,
      title: `${id} in ${u.name} (fixed in bookworm-security ${u.fixedVersion})`,
      diffID: "sha256:" + createHash("sha256").update(i.digest).digest("hex"),
    })),
  );
  return {
    apiVersion: `${REPORT_GROUP}/${REPORT_VERSION}`,
    kind: REPORT_KIND,
    metadata: {
      name: i.name,
      namespace: i.namespace,
      labels: {
        "app.kubernetes.io/managed-by": "sbomscanner",
        "sbomscanner.kubewarden.io/scanjob-uid": "demo-scan-1",
      },
    },
    imageMetadata: {
      registry: "local",
      registryURI: i.registryURI,
      repository: i.repository,
      tag: i.tag,
      platform: i.platform ?? "linux/amd64",
      digest: i.digest,
      ...(i.indexDigest ? { indexDigest: i.indexDigest } : {}),
    },
    report: {
      summary: { critical: 0, high: 0, medium: 0, low: 0, unknown: vulnerabilities.length, suppressed: 0 },
      results: [
        {
          target: `${i.registryURI}/${i.repository}:${i.tag} (debian ${version})`,
          class: "os-pkgs",
          type: "debian",
          vulnerabilities,
        },
      ],
    },
  };
}

/** The honest report for an image in a registry: its digest and packages read from the registry. */
export async function honestReportForImage(
  imageRef: string,
  name: string,
  namespace = "default",
  tag?: string,
  platform = "linux/amd64",
): Promise<Record<string, unknown>> {
  const registry = testRegistryClient();
  const image = parseImageRef(imageRef);
  const ref = tag ? { ...image, tag, digest: undefined } : image;
  const src = await registry.manifestFor(ref, platform);
  if (!src) throw new Error(`${imageRef} not found`);
  const db = await readPackageDB(registry, ref, src.manifest.layers, { debianVersion: true });
  return honestReport({
    name,
    namespace,
    registryURI: image.registry,
    repository: image.repository,
    tag: ref.tag!,
    digest: src.digest,
    installed: db.packages,
    debianVersion: db.debianVersion,
    platform,
    ...(src.indexDigest ? { indexDigest: src.indexDigest } : {}),
  });
}

/** Real updates (bookworm-security versions, changelog CVE ids) for some packages of an image. */
export async function imageSecurityUpdates(imageRef: string, names: string[]) {
  const registry = testRegistryClient();
  const image = parseImageRef(imageRef);
  const m = await registry.manifestFor(image);
  if (!m) throw new Error(`${imageRef} not found`);
  return securityUpdates(names, (await readPackageDB(registry, image, m.manifest.layers)).packages);
}
