// The package database of an image, read straight from its layers in the registry:
// dpkg's /var/lib/dpkg/status (or status.d/ on distroless) and apk's installed db.
// This is how vuln-patcher knows the before and after state without running the image.
import { createHash } from "node:crypto";
import { createGunzip } from "node:zlib";
import * as zlib from "node:zlib";
import { Transform, type Readable } from "node:stream";
import { PatchError, Reason } from "../api/index.ts";
import { DEFAULT_MAX_ENTRIES, DEFAULT_MAX_FILE_BYTES, LimitError, readTar, type TarLimits } from "./tar.ts";
import type { Descriptor } from "./client.ts";
import { isLibraryFile, type LibraryLocation, libraryVersion, matchesLocation } from "./library-files.ts";
import type { ImageRef } from "../api/index.ts";

/** What reading a package database needs of a registry: a layer's bytes by digest. */
export interface BlobReader {
  blob(ref: Pick<ImageRef, "registry" | "repository">, digest: string): Promise<Readable>;
}

export type PackageFormat = "dpkg" | "apk" | "unknown";

export interface PackageDB {
  format: PackageFormat;
  /** name -> installed version */
  packages: Map<string, string>;
  /** From /etc/debian_version (Debian's point release, e.g. 12.15), when asked for. */
  debianVersion?: string;
}

const DPKG_STATUS = "var/lib/dpkg/status";
const DPKG_STATUS_D = "var/lib/dpkg/status.d/";
const APK_DB = "lib/apk/db/installed";
const DEBIAN_VERSION = "etc/debian_version";

/** dpkg status paragraphs -> installed packages (Status: install ok installed). */
export function parseDpkgStatus(text: string, into = new Map<string, string>()): Map<string, string> {
  for (const para of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of para.split("\n")) {
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) fields.set(m[1]!.toLowerCase(), m[2]!.trim());
    }
    const name = fields.get("package");
    const version = fields.get("version");
    const status = fields.get("status");
    if (!name || !version) continue;
    // status.d entries (distroless) carry no Status field: present means installed.
    if (status !== undefined && !/\binstalled$/.test(status)) continue;
    into.set(name, version);
  }
  return into;
}

/** apk's installed db: P:name / V:version records. */
export function parseApkInstalled(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rec of text.split(/\n\s*\n/)) {
    const name = /^P:(.+)$/m.exec(rec)?.[1];
    const version = /^V:(.+)$/m.exec(rec)?.[1];
    if (name && version) out.set(name.trim(), version.trim());
  }
  return out;
}

/** Bounds on reading one layer. */
export interface LayerLimits extends TarLimits {
  /** Compressed bytes of one layer. @default 4 GiB */
  maxLayerBytes?: number;
  /** Uncompressed bytes of one layer (a gzip bomb stops here). @default 16 GiB */
  maxUncompressedBytes?: number;
}

export const DEFAULT_LAYER_LIMITS: Required<LayerLimits> = {
  maxLayerBytes: 4 * 1024 ** 3,
  maxUncompressedBytes: 16 * 1024 ** 3,
  maxFileBytes: DEFAULT_MAX_FILE_BYTES,
  maxEntries: DEFAULT_MAX_ENTRIES,
};

/** Counts the bytes through it; over `max`, fails the stream with a LimitError. */
function counter(max: number, limit: string, what: string): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > max) cb(new LimitError(limit, `${what} is over ${max} bytes`));
      else cb(null, chunk);
    },
  });
}

function decompressor(mediaType: string): Transform | undefined {
  if (/zstd/.test(mediaType)) {
    const z = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
    if (!z) throw new Error("this Node.js cannot read zstd layers");
    return z();
  }
  if (/gzip/.test(mediaType) || /\.tar\.gz$/.test(mediaType)) return createGunzip();
  return undefined;
}

/**
 * A layer's bytes, hashed as they arrive and bounded before and after decompression.
 * `verified()` reads whatever the reader left to the end and resolves when the digest is
 * the one asked for, rejecting (BlobDigestMismatch) when it is not: nothing read from the
 * layer may be used before then. `abort()` stops it all.
 */
function verifiedLayer(blob: Readable, layer: Descriptor, limits: Required<LayerLimits>) {
  const hash = createHash("sha256");
  const compressed = counter(limits.maxLayerBytes, "layer", `layer ${layer.digest}`);
  const ended = new Promise<void>((resolve, reject) => {
    compressed.on("end", resolve);
    compressed.on("error", reject);
  });
  ended.catch(() => {});
  compressed.on("data", (c: Buffer) => hash.update(c));
  blob.on("error", (e) => compressed.destroy(e));
  blob.pipe(compressed);
  const unzip = decompressor(layer.mediaType);
  const uncompressed = counter(
    limits.maxUncompressedBytes,
    "uncompressed",
    `layer ${layer.digest} uncompressed`,
  );
  if (unzip) {
    compressed.pipe(unzip).pipe(uncompressed);
    unzip.on("error", (e) => uncompressed.destroy(e));
  } else compressed.pipe(uncompressed);
  compressed.on("error", (e) => uncompressed.destroy(e));
  return {
    stream: uncompressed as Readable,
    async verified(): Promise<void> {
      // The tar reader stops at the archive's end marker: the rest still counts.
      if (unzip) compressed.unpipe(unzip);
      else compressed.unpipe(uncompressed);
      compressed.resume();
      await ended;
      const got = "sha256:" + hash.digest("hex");
      if (got !== layer.digest)
        throw new PatchError(
          Reason.BlobDigestMismatch,
          `the registry served layer ${layer.digest} with other content (${got}): not used`,
        );
    },
    abort(err: Error): void {
      blob.destroy(err);
      compressed.destroy(err);
      uncompressed.destroy(err);
    },
  };
}

function whiteoutOf(name: string): string | undefined {
  const i = name.lastIndexOf("/");
  const base = name.slice(i + 1);
  return base.startsWith(".wh.") && base !== ".wh..wh..opq"
    ? name.slice(0, i + 1) + base.slice(4)
    : undefined;
}

/** What one layer says about the package database. Layers are content-addressed, so this never goes stale. */
export interface LayerScan {
  dpkg?: string;
  apk?: string;
  statusD: Map<string, string>;
  deleted: boolean;
  debianVersion?: string;
  /** Language packages in the layer: a package.json or METADATA path -> its version (src/registry/libraries.ts). */
  libraries: Map<string, string>;
  /** Paths the layer deletes (whiteouts), and directories it makes opaque. */
  whiteouts: string[];
  opaque: string[];
}

/** Recent layer scans by digest: the same base layer is read for every patch of an image. */
const scans = new Map<string, LayerScan>();
const MAX_SCANS = 64;

export async function scanLayer(
  client: BlobReader,
  ref: Pick<ImageRef, "registry" | "repository">,
  layer: Descriptor,
  limits: Required<LayerLimits>,
): Promise<LayerScan> {
  // Keyed by the digest the content was verified to have, never by what a registry claims.
  const cached = scans.get(layer.digest);
  if (cached) {
    scans.delete(layer.digest);
    scans.set(layer.digest, cached);
    return cached;
  }
  if (layer.size > limits.maxLayerBytes)
    throw limitFailure(
      new LimitError("layer", `layer ${layer.digest} is over ${limits.maxLayerBytes} bytes (${layer.size})`),
    );
  const scan: LayerScan = {
    statusD: new Map(),
    deleted: false,
    libraries: new Map(),
    whiteouts: [],
    opaque: [],
  };
  const v = verifiedLayer(await client.blob(ref, layer.digest), layer, limits);
  try {
    await readLayer(v.stream, scan, limits);
    await v.verified();
  } catch (err) {
    throw await unreadable(v, layer, err);
  }
  scans.set(layer.digest, scan);
  if (scans.size > MAX_SCANS) scans.delete(scans.keys().next().value!);
  return scan;
}

/**
 * Why a layer could not be read, as a permanent failure. Content that does not decompress
 * or untar is first checked against its digest (the rest of it is read through the hash):
 * other bytes than asked for are BlobDigestMismatch; the right bytes that are broken
 * anyway are CorruptLayer.
 */
async function unreadable(
  v: ReturnType<typeof verifiedLayer>,
  layer: Descriptor,
  err: unknown,
): Promise<unknown> {
  if (err instanceof LimitError || err instanceof PatchError) {
    v.abort(err);
    return err instanceof LimitError ? limitFailure(err) : err;
  }
  try {
    await v.verified();
  } catch (e) {
    v.abort(e as Error);
    return e instanceof LimitError ? limitFailure(e) : e;
  }
  v.abort(err as Error);
  return new PatchError(
    Reason.CorruptLayer,
    `layer ${layer.digest} has the right digest but cannot be read: ${(err as Error).message}`,
    { cause: err },
  );
}

function limitFailure(err: LimitError): PatchError {
  return new PatchError(
    Reason.ImageTooLarge,
    `the image is over a read limit (${err.limit}): ${err.message}`,
    {
      cause: err,
    },
  );
}

async function readLayer(stream: Readable, scan: LayerScan, limits: Required<LayerLimits>): Promise<void> {
  const tar = readTar(
    stream,
    (n) =>
      n === DPKG_STATUS ||
      n === APK_DB ||
      n.startsWith(DPKG_STATUS_D) ||
      n === DEBIAN_VERSION ||
      isLibraryFile(n),
    limits,
  );
  for await (const e of tar) {
    if (e.content && isLibraryFile(e.name)) {
      // Without a readable version it still hides the layers below ("" = no version).
      scan.libraries.set(e.name, libraryVersion(e.name, e.content) ?? "");
    } else if (e.name.endsWith("/.wh..wh..opq")) scan.opaque.push(e.name.slice(0, -"/.wh..wh..opq".length));
    else if (whiteoutOf(e.name)) scan.whiteouts.push(whiteoutOf(e.name)!);
    if (e.name === DEBIAN_VERSION && e.content) scan.debianVersion = e.content.toString("utf8").trim();
    else if (e.name === DPKG_STATUS && e.content) scan.dpkg = e.content.toString("utf8");
    else if (e.name === APK_DB && e.content) scan.apk = e.content.toString("utf8");
    else if (e.name.startsWith(DPKG_STATUS_D) && e.content)
      scan.statusD.set(e.name, e.content.toString("utf8"));
    else if (whiteoutOf(e.name) === DPKG_STATUS || whiteoutOf(e.name) === APK_DB) scan.deleted = true;
  }
}

/**
 * Read the package database from an image's layers, top layer first: the first layer
 * that has (or deletes) the database file decides. Layers below are not read once the
 * answer is known, so a patched image is read mostly from copa's small top layer; and
 * each layer is scanned once per process (by digest).
 */
export async function readPackageDB(
  client: BlobReader,
  ref: Pick<ImageRef, "registry" | "repository">,
  layers: Descriptor[],
  opts: { debianVersion?: boolean; limits?: LayerLimits } = {},
): Promise<PackageDB> {
  const limits = { ...DEFAULT_LAYER_LIMITS, ...opts.limits };
  const statusD = new Map<string, string>(); // file -> content, upper layers win
  let debianVersion: string | undefined;
  let found: PackageDB | undefined;
  for (const layer of [...layers].reverse()) {
    const scan = await scanLayer(client, ref, layer, limits);
    debianVersion ??= scan.debianVersion;
    if (!found) {
      for (const [k, v] of scan.statusD) if (!statusD.has(k)) statusD.set(k, v);
      if (scan.dpkg !== undefined) found = { format: "dpkg", packages: parseDpkgStatus(scan.dpkg) };
      else if (scan.apk !== undefined) found = { format: "apk", packages: parseApkInstalled(scan.apk) };
    }
    if (found && (!opts.debianVersion || debianVersion)) break;
    if (!found && scan.deleted) break;
  }
  if (found) return { ...found, ...(debianVersion ? { debianVersion } : {}) };
  if (statusD.size) {
    const packages = new Map<string, string>();
    for (const text of statusD.values()) parseDpkgStatus(text, packages);
    return { format: "dpkg", packages };
  }
  return { format: "unknown", packages: new Map() };
}

/**
 * The installed versions of language libraries, read from every layer as the image's
 * merged filesystem shows them (an upper layer's file, whiteout or opaque directory hides
 * what is below it). Per location asked for: every version found there (a package
 * installed in two places has two), empty when it is not installed.
 */
export async function readLibraries(
  client: BlobReader,
  ref: Pick<ImageRef, "registry" | "repository">,
  layers: Descriptor[],
  wanted: LibraryLocation[],
  opts: { limits?: LayerLimits } = {},
): Promise<string[][]> {
  const limits = { ...DEFAULT_LAYER_LIMITS, ...opts.limits };
  const found = wanted.map(() => new Map<string, string>());
  const seen = new Set<string>();
  const hidden: string[] = [];
  const isHidden = (p: string) => hidden.some((h) => p === h || p.startsWith(h + "/"));
  for (const layer of [...layers].reverse()) {
    const scan = await scanLayer(client, ref, layer, limits);
    for (const [file, version] of scan.libraries) {
      if (seen.has(file) || isHidden(file)) continue;
      seen.add(file);
      if (!version) continue;
      wanted.forEach((loc, i) => {
        if (matchesLocation(file, loc)) found[i]!.set(file, version);
      });
    }
    // What this layer deletes hides only the layers below it.
    hidden.push(...scan.whiteouts, ...scan.opaque);
  }
  return found.map((m) => [...m.values()]);
}
