// Names derived from inputs, so that two controllers racing produce the same name and
// one of them gets AlreadyExists instead of a second object.
import { createHash } from "node:crypto";
import {
  DEFAULT_TAG_SUFFIX,
  formatImageRef,
  type ImageRef,
  type ImageSpec,
  isValidTag,
  parseImageRef,
  type PatchJobSpec,
} from "../api/index.ts";

/** The PatchJob for a report has the report's name (a report is one image digest and platform). */
export function patchJobNameForReport(reportName: string): string {
  return reportName;
}

/** A PatchJob for an image chosen by a policy or the API: stable for registry, repository, digest (or tag) and platform. */
export function patchJobNameForImage(
  prefix: string,
  image: { registryURI: string; repository: string; digest?: string; tag?: string; platform: string },
): string {
  const h = createHash("sha256")
    .update(
      [image.registryURI, image.repository, image.digest ?? `tag:${image.tag ?? ""}`, image.platform].join(
        "\n",
      ),
    )
    .digest("hex")
    .slice(0, 16);
  const repo = image.repository
    .split("/")
    .pop()!
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return `${prefix}-${repo || "image"}-${h}`;
}

/** The tag a patch is pushed to: `<tag><suffix>`, `latest<suffix>` when the source has no tag. */
export function patchedTag(sourceTag: string | undefined, suffix = DEFAULT_TAG_SUFFIX): string {
  const t = `${sourceTag || "latest"}${suffix}`;
  if (!isValidTag(t)) throw new Error(`patched tag ${JSON.stringify(t)} is not a valid tag`);
  return t;
}

/** True when a tag is one we produced (ends with the patched suffix): never patch our own output. */
export function isPatchedTag(tag: string | undefined, suffix = DEFAULT_TAG_SUFFIX): boolean {
  return !!tag && !!suffix && tag.endsWith(suffix);
}

/** The destination reference for a PatchJob spec. */
export function targetRef(spec: { image: ImageSpec; target?: PatchJobSpec["target"] }): ImageRef {
  if (spec.target?.reference) {
    const r = parseImageRef(spec.target.reference);
    if (r.digest)
      throw new Error(
        "spec.target.reference must not carry a digest: the patched digest is not known in advance",
      );
    return r;
  }
  return {
    registry: spec.image.registryURI,
    repository: spec.image.repository,
    tag: patchedTag(spec.image.tag, spec.target?.tagSuffix ?? DEFAULT_TAG_SUFFIX),
  };
}

/** The source reference, pinned by digest when known (the report's digest, never a moving tag). */
export function sourceRef(spec: { image: ImageSpec }): ImageRef {
  const img = spec.image;
  const digest = img.platform === "all" ? (img.indexDigest ?? img.digest) : img.digest;
  return {
    registry: img.registryURI,
    repository: img.repository,
    ...(img.tag ? { tag: img.tag } : {}),
    ...(digest ? { digest } : {}),
  };
}

export { formatImageRef };

/** copa's staging tags (`<tag>-vp-staging`, and `-<arch>` after it): never patched, never published. */
export function isStagingTag(tag: string | undefined): boolean {
  return !!tag && /-vp-staging(-[a-z0-9_]+)*$/.test(tag);
}
