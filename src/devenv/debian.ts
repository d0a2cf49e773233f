// Real package data for the vulnerable test image, read from the Debian mirror the
// image itself uses: the newest versions in bookworm-security (what apt, and so copa,
// will install), and the CVE ids their changelogs name.
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { DEBIAN_SECURITY_MIRROR } from "./images.ts";

const run = promisify(execFile);

export interface DebPackage {
  name: string;
  version: string;
  filename: string;
  source: string;
}

let cache: Promise<Map<string, DebPackage>> | undefined;

async function xzDecompress(data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn("xz", ["-dc"], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    p.stdout.on("data", (b: Buffer) => out.push(b));
    p.on("error", reject);
    p.on("close", (code) =>
      code === 0 ? resolve(Buffer.concat(out).toString("utf8")) : reject(new Error(`xz exited ${code}`)),
    );
    p.stdin.end(data);
  });
}

/** Every binary package of bookworm-security (amd64), newest version per name. */
export function securityPackages(): Promise<Map<string, DebPackage>> {
  cache ??= (async () => {
    const url = `${DEBIAN_SECURITY_MIRROR}/dists/bookworm-security/main/binary-amd64/Packages.xz`;
    const res = await fetch(url, { signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
    const text = await xzDecompress(Buffer.from(await res.arrayBuffer()));
    const out = new Map<string, DebPackage>();
    for (const para of text.split("\n\n")) {
      const f = (k: string) => new RegExp(`^${k}: (.*)$`, "m").exec(para)?.[1]?.trim();
      const name = f("Package");
      const version = f("Version");
      const filename = f("Filename");
      if (!name || !version || !filename) continue;
      const source = (f("Source") ?? name).split(" ")[0]!;
      out.set(name, { name, version, filename, source });
    }
    return out;
  })();
  return cache;
}

/** The CVE ids named in the newest changelog entries of a package, down to (not including) `sinceVersion`. */
export async function changelogCVEs(pkg: DebPackage, sinceVersion: string): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), "vuln-patcher-deb-"));
  try {
    const res = await fetch(`${DEBIAN_SECURITY_MIRROR}/${pkg.filename}`, {
      signal: AbortSignal.timeout(120_000),
    });
    if (!res.ok) throw new Error(`GET ${pkg.filename}: ${res.status}`);
    const deb = join(dir, "p.deb");
    await (await import("node:fs/promises")).writeFile(deb, Buffer.from(await res.arrayBuffer()));
    const data = join(dir, "data");
    await run("dpkg-deb", ["-x", deb, data]);
    const changelog = await readFile(join(data, "usr/share/doc", pkg.name, "changelog.Debian.gz")).catch(
      () => undefined,
    );
    if (!changelog) return [];
    const text = gunzipSync(changelog).toString("utf8");
    const cves = new Set<string>();
    for (const entry of text.split(/\n(?=\S)/)) {
      const m = /^\S+ \(([^)]+)\)/.exec(entry);
      if (!m) continue;
      if (m[1] === sinceVersion) break;
      for (const c of entry.matchAll(/CVE-\d{4}-\d{4,7}|GHSA(?:-[a-z0-9]{4}){3}/g)) cves.add(c[0]);
    }
    return [...cves].sort();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Real updates for packages of the vulnerable image: installed version from the image,
 * fixed version from bookworm-security, CVE ids from the fixed package's changelog
 * (cached by version, as reading it means downloading the .deb).
 */
export async function securityUpdates(
  names: string[],
  installed: Map<string, string>,
): Promise<
  Array<{ name: string; installedVersion: string; fixedVersion: string; vulnerabilityIDs: string[] }>
> {
  const { cacheDir } = await import("./tools.ts");
  const { readFile: rf, writeFile: wf, mkdir } = await import("node:fs/promises");
  const cacheFile = join(cacheDir(), "images", "changelog-cves.json");
  const cache = JSON.parse(await rf(cacheFile, "utf8").catch(() => "{}")) as Record<string, string[]>;
  const sec = await securityPackages();
  const out = [];
  for (const name of names) {
    const pkg = sec.get(name);
    const have = installed.get(name);
    if (!pkg || !have) throw new Error(`${name}: not in bookworm-security or not installed in the image`);
    const key = `${name}@${have}..${pkg.version}`;
    cache[key] ??= await changelogCVEs(pkg, have);
    out.push({ name, installedVersion: have, fixedVersion: pkg.version, vulnerabilityIDs: cache[key] });
  }
  await mkdir(join(cacheDir(), "images"), { recursive: true });
  await wf(cacheFile, JSON.stringify(cache, null, 2));
  return out;
}
