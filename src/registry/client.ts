// A small OCI distribution client: resolve tags, read manifests and configs, stream
// blobs. Enough to verify a push and read a package database from an image's layers,
// with the same credentials copa uses (basic auth, or the bearer-token dance).
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { type ImageRef, parsePlatform, PatchError, Reason } from "../api/index.ts";
import type { CredentialLookup } from "./auth.ts";

export const MediaType = {
  OciIndex: "application/vnd.oci.image.index.v1+json",
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  DockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

const ACCEPT = Object.values(MediaType).join(", ");

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface Index {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
}

export interface Resolved {
  digest: string;
  mediaType: string;
  body: Manifest | Index;
}

export interface RegistryClientOptions {
  credentials?: CredentialLookup;
  /** Hosts reached over plain HTTP. Loopback hosts always are (as in go-containerregistry). */
  insecureHosts?: string[];
  /** @default 30_000 */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * A request that never got an answer. An address no request can ever reach (a port
 * fetch refuses outright, a URL that does not parse) is permanent: retrying changes
 * nothing. Everything else (refused, reset, timed out, a name that does not resolve now)
 * may pass, and is retried.
 */
export function unreachable(registry: string, err: unknown): PatchError {
  const e = err as Error & { cause?: Error & { code?: string } };
  const cause = e.cause instanceof Error ? e.cause : undefined;
  const why = cause?.message ?? e.message;
  if (
    cause?.message === "bad port" ||
    cause?.code === "ERR_INVALID_URL" ||
    (e.name === "TypeError" && /Invalid URL|parse URL/.test(e.message))
  )
    return new PatchError(
      Reason.InvalidRegistryAddress,
      `registry ${registry} cannot be reached at that address: ${why}`,
      {
        cause: err,
      },
    );
  return new PatchError(Reason.RegistryUnreachable, `registry ${registry} is unreachable: ${why}`, {
    transient: true,
    cause: err,
  });
}

export function isIndex(b: Manifest | Index): b is Index {
  return Array.isArray((b as Index).manifests);
}

/** Reached over plain HTTP: a loopback host, or one named as insecure. Everything else is HTTPS. */
export function plainHTTP(host: string, insecureHosts: readonly string[] = []): boolean {
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host) || insecureHosts.includes(host);
}

export class RegistryClient {
  #opts: RegistryClientOptions;
  #tokens = new Map<string, string>();

  constructor(opts: RegistryClientOptions = {}) {
    this.#opts = opts;
  }

  /** The same client with other credentials (one tenant's), and tokens of its own. */
  withCredentials(credentials: CredentialLookup): RegistryClient {
    return new RegistryClient({ ...this.#opts, credentials });
  }

  #base(host: string): string {
    const plain = plainHTTP(host, this.#opts.insecureHosts);
    const h = host === "docker.io" ? "registry-1.docker.io" : host;
    return `${plain ? "http" : "https"}://${h}`;
  }

  async #request(
    ref: Pick<ImageRef, "registry" | "repository">,
    path: string,
    init: { method?: string; accept?: string; body?: Uint8Array; contentType?: string } = {},
  ): Promise<Response> {
    const url = `${this.#base(ref.registry)}/v2/${ref.repository}/${path}`;
    const doFetch = this.#opts.fetch ?? fetch;
    const key = `${ref.registry}/${ref.repository}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers: Record<string, string> = {};
      if (init.accept) headers.accept = init.accept;
      if (init.contentType) headers["content-type"] = init.contentType;
      const token = this.#tokens.get(key);
      const cred = this.#opts.credentials?.(ref.registry);
      if (token) headers.authorization = `Bearer ${token}`;
      else if (cred)
        headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;
      let res: Response;
      try {
        res = await doFetch(url, {
          method: init.method ?? "GET",
          headers,
          ...(init.body ? { body: init.body } : {}),
          redirect: "follow",
          signal: AbortSignal.timeout(this.#opts.timeoutMs ?? 30_000),
        });
      } catch (err) {
        throw unreachable(ref.registry, err);
      }
      if (res.status === 401 && attempt === 0) {
        const challenge = res.headers.get("www-authenticate") ?? "";
        await res.body?.cancel();
        if (/^bearer/i.test(challenge)) {
          this.#tokens.set(key, await this.#token(challenge, ref, cred));
          continue;
        }
      }
      return res;
    }
    throw new PatchError(
      Reason.RegistryDenied,
      `registry ${ref.registry} denied access to ${ref.repository}`,
    );
  }

  async #token(
    challenge: string,
    ref: Pick<ImageRef, "registry" | "repository">,
    cred: ReturnType<CredentialLookup>,
  ): Promise<string> {
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (!params.realm)
      throw new PatchError(Reason.RegistryDenied, `registry ${ref.registry} sent an unusable auth challenge`);
    const u = new URL(params.realm);
    if (params.service) u.searchParams.set("service", params.service);
    u.searchParams.set("scope", params.scope ?? `repository:${ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (cred)
      headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString("base64")}`;
    const res = await (this.#opts.fetch ?? fetch)(u, {
      headers,
      signal: AbortSignal.timeout(this.#opts.timeoutMs ?? 30_000),
    });
    if (!res.ok)
      throw new PatchError(Reason.RegistryDenied, `registry ${ref.registry} refused a token (${res.status})`);
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new PatchError(Reason.RegistryDenied, `registry ${ref.registry} returned no token`);
    return token;
  }

  /** The manifest or index a tag or digest points to; undefined when it does not exist. */
  async resolve(ref: ImageRef): Promise<Resolved | undefined> {
    const reference = ref.digest ?? ref.tag ?? "latest";
    const res = await this.#request(ref, `manifests/${reference}`, { accept: ACCEPT });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    await this.#check(res, ref, "manifest");
    const text = await res.text();
    const digest = "sha256:" + createHash("sha256").update(text).digest("hex");
    if (ref.digest && ref.digest !== digest) {
      throw new PatchError(
        Reason.VerificationFailed,
        `registry ${ref.registry} returned content for ${ref.repository}@${ref.digest} whose digest is ${digest}`,
      );
    }
    const body = JSON.parse(text) as Manifest | Index;
    return {
      digest,
      mediaType: res.headers.get("content-type")?.split(";")[0] ?? body.mediaType ?? "",
      body,
    };
  }

  /** Resolve to a single-platform manifest (choosing `platform` from an index). */
  async manifestFor(
    ref: ImageRef,
    platform = "linux/amd64",
  ): Promise<{ digest: string; manifest: Manifest; indexDigest?: string } | undefined> {
    const r = await this.resolve(ref);
    if (!r) return undefined;
    if (!isIndex(r.body)) return { digest: r.digest, manifest: r.body };
    const want = parsePlatform(platform);
    const d = r.body.manifests.find(
      (m) =>
        m.platform &&
        m.platform.os === want?.os &&
        m.platform.architecture === want.architecture &&
        (!want.variant || !m.platform.variant || m.platform.variant === want.variant),
    );
    if (!d) throw new PatchError(Reason.ImageNotFound, `${ref.repository} has no ${platform} image`);
    const inner = await this.resolve({ ...ref, tag: undefined, digest: d.digest });
    if (!inner || isIndex(inner.body))
      throw new PatchError(Reason.ImageNotFound, `${ref.repository}@${d.digest} is not a manifest`);
    return { digest: inner.digest, manifest: inner.body, indexDigest: r.digest };
  }

  /** A manifest's exact bytes (re-serialising JSON would change its digest). */
  async manifestBytes(
    ref: Pick<ImageRef, "registry" | "repository">,
    digest: string,
  ): Promise<{ bytes: Uint8Array; mediaType: string }> {
    const res = await this.#request(ref, `manifests/${digest}`, { accept: ACCEPT });
    await this.#check(res, ref, `manifest ${digest}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const got = "sha256:" + createHash("sha256").update(bytes).digest("hex");
    if (got !== digest)
      throw new PatchError(Reason.VerificationFailed, `registry ${ref.registry} sent ${got} for ${digest}`);
    const mediaType =
      res.headers.get("content-type")?.split(";")[0] ??
      (JSON.parse(Buffer.from(bytes).toString("utf8")) as { mediaType?: string }).mediaType ??
      "";
    return { bytes, mediaType };
  }

  /** Push a manifest (or index) under a tag or its digest; returns the registry's digest for it. */
  async putManifest(ref: ImageRef, mediaType: string, bytes: Uint8Array): Promise<string> {
    const reference = ref.tag ?? ref.digest;
    if (!reference) throw new Error("putManifest needs a tag or a digest");
    const res = await this.#request(ref, `manifests/${reference}`, {
      method: "PUT",
      contentType: mediaType,
      body: bytes,
    });
    await this.#check(res, ref, `push of manifest ${reference}`);
    await res.body?.cancel();
    return "sha256:" + createHash("sha256").update(bytes).digest("hex");
  }

  /** Make a blob of `from` available in `to` (same registry) without copying it through us. */
  async mountBlob(
    to: Pick<ImageRef, "registry" | "repository">,
    digest: string,
    from: Pick<ImageRef, "repository">,
  ): Promise<void> {
    if (to.repository === from.repository) return;
    const q = `blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from.repository)}`;
    const res = await this.#request(to, q, { method: "POST" });
    await res.body?.cancel();
    if (res.status === 201) return;
    throw new PatchError(
      Reason.RegistryDenied,
      `registry ${to.registry} did not mount ${digest} from ${from.repository} into ${to.repository} (${res.status})`,
    );
  }

  async blob(ref: Pick<ImageRef, "registry" | "repository">, digest: string): Promise<Readable> {
    const res = await this.#request(ref, `blobs/${digest}`);
    await this.#check(res, ref, `blob ${digest}`);
    if (!res.body)
      throw new PatchError(Reason.RegistryUnreachable, `registry ${ref.registry} sent an empty blob`, {
        transient: true,
      });
    return Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  }

  async blobJSON<T>(ref: Pick<ImageRef, "registry" | "repository">, digest: string): Promise<T> {
    const chunks: Buffer[] = [];
    for await (const c of await this.blob(ref, digest)) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as T;
  }

  async #check(res: Response, ref: Pick<ImageRef, "registry" | "repository">, what: string): Promise<void> {
    if (res.ok) return;
    await res.body?.cancel();
    if (res.status === 401 || res.status === 403)
      throw new PatchError(
        Reason.RegistryDenied,
        `registry ${ref.registry} denied ${what} of ${ref.repository} (${res.status})`,
      );
    if (res.status === 404)
      throw new PatchError(Reason.ImageNotFound, `${what} of ${ref.repository} not found in ${ref.registry}`);
    throw new PatchError(
      Reason.RegistryUnreachable,
      `registry ${ref.registry} answered ${res.status} for ${what} of ${ref.repository}`,
      { transient: res.status >= 500 },
    );
  }
}
