// The package database of an image, read straight from its layers in the registry:
// dpkg's /var/lib/dpkg/status (or status.d/ on distroless) and apk's installed db.
// This is how vuln-patcher knows the before and after state without running the image.
import { createGunzip } from "node:zlib";
import * as zlib from "node:zlib";
import type { Readable } from "node:stream";
import { readTar } from "./tar.ts";
import type { Descriptor } from "./client.ts";
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

function decompress(mediaType: string, stream: Readable): Readable {
  if (/zstd/.test(mediaType)) {
    const z = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream })
      .createZstdDecompress;
    if (!z) throw new Error("this Node.js cannot read zstd layers");
    return stream.pipe(z()) as unknown as Readable;
  }
  if (/gzip/.test(mediaType) || /\.tar\.gz$/.test(mediaType)) return stream.pipe(createGunzip());
  return stream;
}

function whiteoutOf(name: string): string | undefined {
  const i = name.lastIndexOf("/");
  const base = name.slice(i + 1);
  return base.startsWith(".wh.") && base !== ".wh..wh..opq"
    ? name.slice(0, i + 1) + base.slice(4)
    : undefined;
}

/** What one layer says about the package database. Layers are content-addressed, so this never goes stale. */
interface LayerScan {
  dpkg?: string;
  apk?: string;
  statusD: Map<string, string>;
  deleted: boolean;
  debianVersion?: string;
}

/** Recent layer scans by digest: the same base layer is read for every patch of an image. */
const scans = new Map<string, LayerScan>();
const MAX_SCANS = 64;

async function scanLayer(
  client: BlobReader,
  ref: Pick<ImageRef, "registry" | "repository">,
  layer: Descriptor,
): Promise<LayerScan> {
  const cached = scans.get(layer.digest);
  if (cached) {
    scans.delete(layer.digest);
    scans.set(layer.digest, cached);
    return cached;
  }
  const scan: LayerScan = { statusD: new Map(), deleted: false };
  const tar = readTar(
    decompress(layer.mediaType, await client.blob(ref, layer.digest)),
    (n) => n === DPKG_STATUS || n === APK_DB || n.startsWith(DPKG_STATUS_D) || n === DEBIAN_VERSION,
  );
  for await (const e of tar) {
    if (e.name === DEBIAN_VERSION && e.content) scan.debianVersion = e.content.toString("utf8").trim();
    else if (e.name === DPKG_STATUS && e.content) scan.dpkg = e.content.toString("utf8");
    else if (e.name === APK_DB && e.content) scan.apk = e.content.toString("utf8");
    else if (e.name.startsWith(DPKG_STATUS_D) && e.content)
      scan.statusD.set(e.name, e.content.toString("utf8"));
    else if (whiteoutOf(e.name) === DPKG_STATUS || whiteoutOf(e.name) === APK_DB) scan.deleted = true;
  }
  scans.set(layer.digest, scan);
  if (scans.size > MAX_SCANS) scans.delete(scans.keys().next().value!);
  return scan;
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
  opts: { debianVersion?: boolean } = {},
): Promise<PackageDB> {
  const statusD = new Map<string, string>(); // file -> content, upper layers win
  let debianVersion: string | undefined;
  let found: PackageDB | undefined;
  for (const layer of [...layers].reverse()) {
    const scan = await scanLayer(client, ref, layer);
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
