// Image references: parsed and validated before they reach copa's argv or a
// registry URL, so a hostile or broken reference is rejected with a clear error.

export interface ImageRef {
  /** host[:port]; docker.io for Docker Hub short names. */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const HOST_RE =
  /^(localhost|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)(:[0-9]{1,5})?$/;
const REPO_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export class InvalidImageRefError extends Error {
  override name = "InvalidImageRefError";
}

/** Parse `[registry/]repository[:tag][@digest]`, Docker's normalisation for short names. */
export function parseImageRef(ref: string): ImageRef {
  if (!ref || ref.length > 512 || /\s/.test(ref) || [...ref].some((c) => c.charCodeAt(0) < 0x20))
    throw new InvalidImageRefError(`invalid image reference ${JSON.stringify(ref)}`);
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest))
      throw new InvalidImageRefError(`invalid digest in ${JSON.stringify(ref)}: expected sha256:<64 hex>`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new InvalidImageRefError(`invalid tag in ${JSON.stringify(ref)}`);
  }
  let registry = "docker.io";
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : "";
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    registry = first;
    rest = rest.slice(slash + 1);
  } else if (slash < 0) {
    rest = `library/${rest}`;
  }
  if (!HOST_RE.test(registry))
    throw new InvalidImageRefError(`invalid registry host in ${JSON.stringify(ref)}`);
  if (!REPO_RE.test(rest) || rest.length > 255)
    throw new InvalidImageRefError(
      `invalid repository in ${JSON.stringify(ref)}: lowercase path components only`,
    );
  if (!tag && !digest) tag = "latest";
  return { registry, repository: rest, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export function formatImageRef(r: ImageRef): string {
  return `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** host[:port], as a registry URI in a report or a reference. */
export function isValidRegistryHost(host: string): boolean {
  return host.length <= 253 && HOST_RE.test(host);
}

/** A repository path: lowercase components, as the distribution spec allows. */
export function isValidRepository(repo: string): boolean {
  return repo.length <= 255 && REPO_RE.test(repo);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
