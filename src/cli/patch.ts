// vuln-patcher patch: patch one image now, like `kubescape patch`, with a before/after
// summary. The same engine as the worker: plan against the image's package database,
// copa on BuildKit, verify the pushed tag in the registry.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { parse, flagOrEnv } from "./args.ts";
import { convertReport, parseReport, type Counts } from "../api/index.ts";
import { formatImageRef, parseImageRef, type ImageRef } from "../api/imageref.ts";
import { patchedTag } from "../api/naming.ts";
import type { PackageUpdate } from "../api/patchjob.ts";
import { localExecutor } from "../patch/local.ts";
import { RegistryClient, isIndex } from "../registry/client.ts";
import {
  credentialsFrom,
  credentialsFromDockerConfigDir,
  dockerConfigJSON,
  parseDockerConfig,
} from "../registry/auth.ts";
import { readPackageDB } from "../registry/pkgdb.ts";
import { patchImage, type PatchImageResult } from "../worker/patch-image.ts";
import { patchIndex, type PatchIndexResult } from "../worker/patch-index.ts";
import { planUpdates } from "../worker/plan.ts";
import { PatchError, UsageError } from "../util/errors.ts";
import { parseDuration } from "../util/duration.ts";

export const patchUsage = `Usage: vuln-patcher patch -i IMAGE [flags]

Patches one image with copa on BuildKit and prints a before/after summary.

  -i, --image REF        image to patch (required), e.g. registry.example/app:1.2
  -r, --report FILE      a sbomscanner VulnerabilityReport (YAML or JSON); without it
                         copa updates every package it can. For a multi-arch index, one
                         per platform (repeat -r): the platforms without one keep their manifest
      --platform P,Q     multi-arch without reports: patch only these platforms (default all);
                         the others keep their manifest in the patched index
      --publish-partial  multi-arch: if some platforms fail, still publish the index with the
                         others unchanged (default: publish nothing)
  -a, --addr ADDR        BuildKit address (default $BUILDKIT_ADDR, else unix:///run/buildkit/buildkitd.sock)
  -t, --tag TAG          tag, or full reference, of the result (default <tag>-patched)
      --timeout D        time limit for copa (default 5m)
  -u, --username USER    registry user (default $REGISTRY_USERNAME)
  -p, --password PASS    registry password (default $REGISTRY_PASSWORD; prefer the variable:
                         flags show up in the process list)
      --push / --no-push push the result (default), or only plan: show what would change
      --dry-run          the same as --no-push: the packages, versions and CVEs a patch would
                         change, checked against the image; copa does not run
      --ignore-errors    let copa continue past packages it cannot update
      --copa PATH        the copa binary (default copa on PATH)
      --insecure-registry HOST  reach HOST over plain HTTP (loopback always is)
      --json             print the result as JSON on stdout
Exit 0 when the image was patched or needed nothing (the output says which), 1 on failure, 2 on bad input.`;

export interface PatchSummary {
  image: string;
  result: "patched" | "no-op" | "planned";
  patchedImage?: string;
  digest?: string;
  adopted?: boolean;
  before: { total: number; fixable: number };
  after: { fixed: number; remaining: number };
  packages: Array<{
    name: string;
    installed: string;
    fixed: string;
    now?: string;
    status: "fixed" | "remaining" | "already" | "planned";
    cves: string[];
  }>;
  message?: string;
}

export async function patchCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    image: { type: "string", short: "i" },
    report: { type: "string", short: "r", multiple: true },
    platform: { type: "string" },
    "publish-partial": { type: "boolean" },
    addr: { type: "string", short: "a" },
    tag: { type: "string", short: "t" },
    timeout: { type: "string" },
    username: { type: "string", short: "u" },
    password: { type: "string", short: "p" },
    push: { type: "boolean" },
    "no-push": { type: "boolean" },
    "dry-run": { type: "boolean" },
    "ignore-errors": { type: "boolean" },
    copa: { type: "string" },
    "insecure-registry": { type: "string", multiple: true },
    json: { type: "boolean" },
  });
  if (v.help) {
    process.stdout.write(patchUsage + "\n");
    return 0;
  }
  if (!v.image) throw new UsageError("--image is required (vuln-patcher patch --help)");
  let source: ImageRef;
  try {
    source = parseImageRef(v.image);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const timeout = v.timeout ?? "5m";
  try {
    parseDuration(timeout);
  } catch {
    throw new UsageError(`--timeout: invalid duration ${JSON.stringify(timeout)}`);
  }
  const target = targetFor(source, v.tag);
  const addr = flagOrEnv(v.addr, process.env.BUILDKIT_ADDR, "unix:///run/buildkit/buildkitd.sock")!;
  const push = !v["no-push"] && !v["dry-run"];
  const say = (s: string) => process.stderr.write(`${s}\n`);

  // Reports -> updates (or update-all mode without one).
  const reports: CliReport[] = [];
  for (const file of v.report ?? []) reports.push(await readReportFile(file));
  for (const r of reports)
    say(
      `report ${r.platform}: ${r.counts.total} vulnerabilities, ${r.counts.fixable} fixable in ${r.updates.length} packages`,
    );
  const platformsFlag = v.platform
    ?.split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const updates: PackageUpdate[] | undefined = reports[0]?.updates;
  const os = reports[0]?.os;
  const counts = reports[0]?.counts;

  // Credentials: flags or environment, else $DOCKER_CONFIG. Handed to copa as a private
  // DOCKER_CONFIG directory; never printed, never in argv.
  const username = flagOrEnv(v.username, process.env.REGISTRY_USERNAME);
  const password = flagOrEnv(v.password, process.env.REGISTRY_PASSWORD);
  if (!!username !== !!password) throw new UsageError("--username and --password go together");
  let dockerDir: string | undefined;
  let credentials = credentialsFromDockerConfigDir();
  if (username && password) {
    dockerDir = await mkdtemp(join(tmpdir(), "vuln-patcher-auth-"));
    const hosts = [...new Set([source.registry, target.registry])];
    const json = JSON.stringify({
      auths: Object.fromEntries(
        hosts.map((h) => [h, JSON.parse(dockerConfigJSON(h, { username, password })).auths[h]]),
      ),
    });
    await writeFile(join(dockerDir, "config.json"), json, { mode: 0o600 });
    credentials = credentialsFrom(parseDockerConfig(json));
  }
  const registry = new RegistryClient({ credentials, insecureHosts: v["insecure-registry"] ?? [] });
  try {
    const resolved = await registry.resolve(source);
    if (!resolved) throw new PatchError("ImageNotFound", `source image ${formatImageRef(source)} not found`);
    if (isIndex(resolved.body)) {
      if (!push) throw new UsageError("--dry-run (--no-push) is not supported for a multi-arch index yet");
      if (platformsFlag?.length && reports.length)
        throw new UsageError(
          "--platform goes with update-all mode; with reports, their platforms are patched",
        );
      const result = await patchIndex({
        id: `cli-${Date.now()}`,
        source,
        target,
        platforms: reports.length
          ? reports.map((r) => ({ platform: r.platform, updates: r.updates }))
          : platformsFlag?.map((platform) => ({ platform })),
        os,
        buildkitAddr: addr,
        timeout,
        ignoreErrors: !!v["ignore-errors"],
        publishPartial: !!v["publish-partial"],
        executor: localExecutor({ copaPath: v.copa, env: dockerDir ? { DOCKER_CONFIG: dockerDir } : {} }),
        registry,
        onProgress: (stage, message) => say(`[${stage}] ${message}`),
      });
      const summary = summarizeIndex(formatImageRef(source), result, reports);
      if (v.json) process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
      else process.stdout.write(renderIndexSummary(summary));
      if (result.kind === "failed") throw new Error(`${result.reason ?? "CopaFailed"}: ${result.message}`);
      return 0;
    }
    if (reports.length > 1)
      throw new UsageError(
        `${formatImageRef(source)} is a single-platform image: give one report, not ${reports.length}`,
      );
    if (platformsFlag?.length) throw new UsageError("--platform is for a multi-arch index");
    let summary: PatchSummary;
    if (!push) {
      summary = await planOnly(registry, source, updates, os, counts);
    } else {
      const result = await patchImage({
        id: `cli-${Date.now()}`,
        source,
        target,
        updates,
        os,
        buildkitAddr: addr,
        timeout,
        ignoreErrors: !!v["ignore-errors"],
        executor: localExecutor({ copaPath: v.copa, env: dockerDir ? { DOCKER_CONFIG: dockerDir } : {} }),
        registry,
        onProgress: (stage, message) => say(`[${stage}] ${message}`),
      });
      summary = summarize(formatImageRef(source), result, updates, counts);
    }
    if (v.json) process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
    else process.stdout.write(renderSummary(summary));
    return 0;
  } catch (err) {
    if (err instanceof PatchError) throw new Error(`${err.reason}: ${err.message}`, { cause: err });
    throw err;
  } finally {
    if (dockerDir) await rm(dockerDir, { recursive: true, force: true });
  }
}

function targetFor(source: ImageRef, tag: string | undefined): ImageRef {
  if (tag && (tag.includes("/") || tag.includes(":"))) {
    const t = parseImageRef(tag);
    if (t.digest) throw new UsageError("--tag cannot carry a digest");
    return t;
  }
  try {
    return { registry: source.registry, repository: source.repository, tag: tag ?? patchedTag(source.tag) };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function planOnly(
  registry: RegistryClient,
  source: ImageRef,
  updates: PackageUpdate[] | undefined,
  os: { type: string } | undefined,
  counts: Counts | undefined,
): Promise<PatchSummary> {
  const src = await registry.manifestFor(source);
  if (!src) throw new PatchError("ImageNotFound", `source image ${formatImageRef(source)} not found`);
  const db = await readPackageDB(registry, source, src.manifest.layers);
  const plan = planUpdates(updates ?? [], db, os?.type);
  return {
    image: formatImageRef(source),
    result: "planned",
    before: { total: counts?.total ?? 0, fixable: counts?.fixable ?? 0 },
    after: { fixed: 0, remaining: counts?.fixable ?? 0 },
    packages: [
      ...plan.needed.map((u) => ({
        name: u.name,
        installed: u.installedVersion,
        fixed: u.fixedVersion,
        status: "planned" as const,
        cves: u.vulnerabilityIDs ?? [],
      })),
      ...plan.satisfied.map((u) => ({
        name: u.name,
        installed: db.packages.get(u.name) ?? "",
        fixed: u.fixedVersion,
        status: "already" as const,
        cves: u.vulnerabilityIDs ?? [],
      })),
    ],
    message: updates
      ? `dry run: ${plan.needed.length} updates would be made; nothing was built`
      : "dry run without a report: copa would update every package; nothing was built",
  };
}

export function summarize(
  image: string,
  r: PatchImageResult,
  updates: PackageUpdate[] | undefined,
  counts: Counts | undefined,
): PatchSummary {
  const findings = (u: PackageUpdate) => Math.max(1, u.vulnerabilityIDs?.length ?? 0);
  const fixable = counts?.fixable ?? (updates ?? []).reduce((n, u) => n + findings(u), 0);
  if (r.kind === "noop") {
    return {
      image,
      result: "no-op",
      before: { total: counts?.total ?? 0, fixable },
      after: { fixed: 0, remaining: fixable },
      packages: (r.plan?.satisfied ?? []).map((u) => ({
        name: u.name,
        installed: u.installedVersion,
        fixed: u.fixedVersion,
        now: r.before.packages.get(u.name),
        status: "already" as const,
        cves: u.vulnerabilityIDs ?? [],
      })),
      message: r.message,
    };
  }
  const after = new Map(r.verification.changed.map((c) => [c.name, c.to]));
  const fixedFindings = updates
    ? r.verification.fixed.reduce((n, u) => n + findings(u), 0)
    : r.verification.fixed.length;
  return {
    image,
    result: "patched",
    patchedImage: r.patchedRef,
    digest: r.patchedDigest,
    adopted: r.adopted,
    before: { total: counts?.total ?? 0, fixable },
    after: { fixed: fixedFindings, remaining: Math.max(0, fixable - fixedFindings) },
    packages: [
      ...r.verification.fixed.map((u) => ({
        name: u.name,
        installed: u.installedVersion,
        fixed: u.fixedVersion,
        now: after.get(u.name) ?? u.fixedVersion,
        status: "fixed" as const,
        cves: u.vulnerabilityIDs ?? [],
      })),
      ...r.verification.remaining.map((u) => ({
        name: u.name,
        installed: u.installedVersion,
        fixed: u.fixedVersion,
        now: after.get(u.name) ?? u.installedVersion,
        status: "remaining" as const,
        cves: u.vulnerabilityIDs ?? [],
      })),
      ...(r.plan?.satisfied ?? []).map((u) => ({
        name: u.name,
        installed: u.installedVersion,
        fixed: u.fixedVersion,
        now: r.before.packages.get(u.name),
        status: "already" as const,
        cves: u.vulnerabilityIDs ?? [],
      })),
    ],
  };
}

export function renderTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

export function renderSummary(s: PatchSummary): string {
  const head =
    s.result === "patched"
      ? `${s.adopted ? "Already patched (adopted the existing push)" : "Patched"}: ${s.patchedImage}@${s.digest}`
      : s.result === "no-op"
        ? `No-op: nothing to update (${s.message})`
        : `Plan only: ${s.message}`;
  const rows = [["PACKAGE", "CVE", "INSTALLED", "FIXED IN", "NOW", "STATUS"]];
  for (const p of s.packages) {
    const cves = p.cves.length ? p.cves : ["-"];
    cves.forEach((c, i) =>
      rows.push([
        i === 0 ? p.name : "",
        c,
        i === 0 ? p.installed : "",
        i === 0 ? p.fixed : "",
        i === 0 ? (p.now ?? "") : "",
        i === 0 ? p.status : "",
      ]),
    );
  }
  const totals = `vulnerabilities: ${s.before.total} total, ${s.before.fixable} fixable -> ${s.after.fixed} fixed, ${s.after.remaining} fixable remaining`;
  return `${head}\n${totals}\n\n${s.packages.length ? renderTable(rows) : "(no package changes)\n"}`;
}

interface CliReport {
  file: string;
  platform: string;
  os: { type: string; version: string };
  counts: Counts;
  updates: PackageUpdate[];
}

async function readReportFile(file: string): Promise<CliReport> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(file, "utf8"));
  } catch (err) {
    throw new UsageError(
      `cannot read the report ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message.split("\n")[0]}`,
    );
  }
  const report = parseReport(doc);
  if (!report.ok) throw new UsageError(`${file}: ${report.reason}: ${report.message}`);
  const conv = convertReport(report.value);
  if (!conv.ok) throw new UsageError(`${file}: ${conv.reason}: ${conv.message}`);
  const ids = new Map<string, string[]>();
  for (const f of conv.value.findings) ids.set(f.packageName, [...(ids.get(f.packageName) ?? []), f.cve]);
  return {
    file,
    platform: report.value.imageMetadata.platform,
    os: { type: conv.value.os.type, version: conv.value.os.version },
    counts: conv.value.counts,
    updates: conv.value.updates.map((u) => ({
      name: u.name,
      installedVersion: u.installedVersion,
      fixedVersion: u.fixedVersion,
      vulnerabilityIDs: [...new Set(ids.get(u.name) ?? [])].sort(),
    })),
  };
}

export interface IndexSummary {
  image: string;
  result: "patched" | "no-op" | "failed";
  patchedImage: string;
  digest?: string;
  adopted: boolean;
  message: string;
  platforms: Array<{
    platform: string;
    result: string;
    sourceDigest: string;
    digest?: string;
    /** Findings before, from the platform's report (undefined without one). */
    fixableBefore?: number;
    fixed: number;
    packagesUpdated: number;
    message: string;
  }>;
}

export function summarizeIndex(image: string, r: PatchIndexResult, reports: CliReport[]): IndexSummary {
  return {
    image,
    result: r.kind === "noop" ? "no-op" : r.kind,
    patchedImage: r.patchedRef,
    ...(r.indexDigest ? { digest: r.indexDigest } : {}),
    adopted: r.adopted,
    message: r.message,
    platforms: r.platforms.map((o) => {
      const rep = reports.find((x) => x.platform === o.platform);
      const fixed = o.verification?.fixed ?? [];
      return {
        platform: o.platform,
        result: o.result,
        sourceDigest: o.sourceDigest,
        ...(o.digest ? { digest: o.digest } : {}),
        ...(rep ? { fixableBefore: rep.counts.fixable } : {}),
        fixed: rep
          ? fixed.reduce((n, u) => n + Math.max(1, u.vulnerabilityIDs?.length ?? 0), 0)
          : fixed.length,
        packagesUpdated: fixed.length,
        message: o.message,
      };
    }),
  };
}

export function renderIndexSummary(s: IndexSummary): string {
  const head =
    s.result === "patched"
      ? `${s.adopted ? "Already patched (adopted the existing index)" : "Patched index"}: ${s.patchedImage}@${s.digest}`
      : s.result === "no-op"
        ? `No-op: ${s.message}`
        : `Failed, nothing published under ${s.patchedImage}: ${s.message}`;
  const rows = [["PLATFORM", "RESULT", "FIXABLE BEFORE", "FIXED", "PACKAGES", "DIGEST"]];
  for (const p of s.platforms)
    rows.push([
      p.platform,
      p.result,
      p.fixableBefore === undefined ? "-" : String(p.fixableBefore),
      String(p.fixed),
      String(p.packagesUpdated),
      p.digest ? p.digest.slice(0, 19) : "-",
    ]);
  return `${head}\n\n${renderTable(rows)}`;
}
