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
      for (const c of entry.matchAll(/CVE-\d{4}-\d{4,7}/g)) cves.add(c[0]);
    }
    return [...cves].sort();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
