// vuln-patcher patch: patch one image now, like `kubescape patch`, with a before/after
// summary. The same engine as the worker: plan against the image's package database,
// copa on BuildKit, verify the pushed tag in the registry.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, flagOrEnv } from "./args.ts";
import {
  formatImageRef,
  type ImageRef,
  type LibrarySettings,
  type PackageType,
  parseImageRef,
  PatchError,
  type PatchLevel,
  planLibraries,
} from "../api/index.ts";
import { patchedTag } from "../decide/index.ts";
import { type Executor, librariesAfter, localExecutor, patchImage, patchIndex } from "../patch/index.ts";
import {
  type CredentialLookup,
  credentialsFrom,
  credentialsFromDockerConfigDir,
  dockerConfigJSON,
  isIndex,
  parseDockerConfig,
  RegistryClient,
} from "../registry/index.ts";

import { parseDuration, UsageError } from "../util/index.ts";

import { readReportFile, type CliReport } from "./patch-report.ts";
import {
  planOnly,
  renderIndexSummary,
  renderSummary,
  summarize,
  summarizeIndex,
  type PatchSummary,
} from "./patch-summary.ts";

/** @default "5m" */
export const DEFAULT_PATCH_TIMEOUT = "5m";
/** @default "unix:///run/buildkit/buildkitd.sock" */
export const DEFAULT_BUILDKIT_ADDR = "unix:///run/buildkit/buildkitd.sock";

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
  -a, --addr ADDR        BuildKit address (default $BUILDKIT_ADDR, else ${DEFAULT_BUILDKIT_ADDR})
  -t, --tag TAG          tag, or full reference, of the result (default <tag>-patched)
      --timeout D        time limit for copa (default ${DEFAULT_PATCH_TIMEOUT})
  -u, --username USER    registry user (default $REGISTRY_USERNAME)
  -p, --password PASS    registry password (default $REGISTRY_PASSWORD; prefer the variable:
                         flags show up in the process list)
      --push / --no-push push the result (default), or only plan: show what would change
      --dry-run          the same as --no-push: the packages, versions and CVEs a patch would
                         change, checked against the image; copa does not run
      --pkg-types T      with a report: os (default), library (its Python and Node.js
                         packages, copa's experimental support) or os,library
      --library-patch-level L  the highest version jump of a library update: patch
                         (default), minor or major; a fix beyond it is listed, not applied
      --ignore-errors    let copa continue past packages it cannot update
      --copa PATH        the copa binary (default: copa on PATH, else the one make setup built)
      --insecure-registry HOST  reach HOST over plain HTTP (loopback always is)
      --json             print the result as JSON on stdout
Exit 0 when the image was patched or needed nothing (the output says which), 1 on failure, 2 on bad input.`;

const FLAGS = {
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
  "pkg-types": { type: "string" },
  "library-patch-level": { type: "string" },
  copa: { type: "string" },
  "insecure-registry": { type: "string", multiple: true },
  json: { type: "boolean" },
} as const;

type Flags = ReturnType<typeof parse<typeof FLAGS>>["values"];

/** Everything the command needs, checked: bad input is a UsageError before anything runs. */
interface PatchPlan {
  source: ImageRef;
  target: ImageRef;
  addr: string;
  timeout: string;
  push: boolean;
  reports: CliReport[];
  platforms?: string[];
  libraries: LibrarySettings;
  flags: Flags;
}

/** --pkg-types and --library-patch-level, checked. */
function librarySettings(v: Flags): LibrarySettings {
  const types = (v["pkg-types"] ?? "os").split(",").map((t) => t.trim());
  for (const t of types)
    if (t !== "os" && t !== "library")
      throw new UsageError(`--pkg-types: ${JSON.stringify(t)} is not os or library`);
  const level = v["library-patch-level"] ?? "patch";
  if (!["patch", "minor", "major"].includes(level))
    throw new UsageError(`--library-patch-level: ${JSON.stringify(level)} is not patch, minor or major`);
  return { packageTypes: types as PackageType[], patchLevel: level as PatchLevel };
}

async function planFrom(v: Flags): Promise<PatchPlan> {
  if (!v.image) throw new UsageError("--image is required (vuln-patcher patch --help)");
  let source: ImageRef;
  try {
    source = parseImageRef(v.image);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const timeout = v.timeout ?? DEFAULT_PATCH_TIMEOUT;
  try {
    parseDuration(timeout);
  } catch {
    throw new UsageError(`--timeout: invalid duration ${JSON.stringify(timeout)}`);
  }
  const reports: CliReport[] = [];
  for (const file of v.report ?? []) reports.push(await readReportFile(file));
  return {
    source,
    target: targetFor(source, v.tag),
    addr: flagOrEnv(v.addr, process.env.BUILDKIT_ADDR, DEFAULT_BUILDKIT_ADDR)!,
    timeout,
    push: !v["no-push"] && !v["dry-run"],
    reports,
    platforms: v.platform
      ?.split(",")
      .map((p) => p.trim())
      .filter(Boolean),
    libraries: librarySettings(v),
    flags: v,
  };
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

/**
 * Credentials: flags or environment, else $DOCKER_CONFIG. Handed to copa as a private
 * DOCKER_CONFIG directory; never printed, never in argv.
 */
async function credentialsFor(p: PatchPlan): Promise<{ credentials: CredentialLookup; dockerDir?: string }> {
  const username = flagOrEnv(p.flags.username, process.env.REGISTRY_USERNAME);
  const password = flagOrEnv(p.flags.password, process.env.REGISTRY_PASSWORD);
  if (!!username !== !!password) throw new UsageError("--username and --password go together");
  if (!username || !password) return { credentials: credentialsFromDockerConfigDir() };
  const dockerDir = await mkdtemp(join(tmpdir(), "vuln-patcher-auth-"));
  const hosts = [...new Set([p.source.registry, p.target.registry])];
  const json = JSON.stringify({
    auths: Object.fromEntries(
      hosts.map((h) => [h, JSON.parse(dockerConfigJSON(h, { username, password })).auths[h]]),
    ),
  });
  await writeFile(join(dockerDir, "config.json"), json, { mode: 0o600 });
  return { credentials: credentialsFrom(parseDockerConfig(json)), dockerDir };
}

const say = (s: string) => process.stderr.write(`${s}\n`);

async function patchAnIndex(
  p: PatchPlan,
  registry: RegistryClient,
  executor: () => Executor,
): Promise<number> {
  if (!p.push) throw new UsageError("--dry-run (--no-push) is not supported for a multi-arch index yet");
  if (p.platforms?.length && p.reports.length)
    throw new UsageError("--platform goes with update-all mode; with reports, their platforms are patched");
  if (p.flags["pkg-types"] || p.flags["library-patch-level"])
    throw new UsageError(
      "--pkg-types and --library-patch-level are for a single-platform image: an index is patched with OS updates",
    );
  const result = await patchIndex({
    id: `cli-${Date.now()}`,
    source: p.source,
    target: p.target,
    platforms: p.reports.length
      ? p.reports.map((r) => ({ platform: r.platform, updates: r.updates }))
      : p.platforms?.map((platform) => ({ platform })),
    os: p.reports[0]?.os,
    buildkitAddr: p.addr,
    timeout: p.timeout,
    ignoreErrors: !!p.flags["ignore-errors"],
    publishPartial: !!p.flags["publish-partial"],
    executor: executor(),
    registry,
    onProgress: (stage, message) => say(`[${stage}] ${message}`),
  });
  const summary = summarizeIndex(formatImageRef(p.source), result, p.reports);
  process.stdout.write(p.flags.json ? JSON.stringify(summary, null, 2) + "\n" : renderIndexSummary(summary));
  if (result.kind === "failed") throw new Error(`${result.reason ?? "CopaFailed"}: ${result.message}`);
  return 0;
}

async function patchAnImage(
  p: PatchPlan,
  registry: RegistryClient,
  executor: () => Executor,
): Promise<number> {
  if (p.reports.length > 1)
    throw new UsageError(
      `${formatImageRef(p.source)} is a single-platform image: give one report, not ${p.reports.length}`,
    );
  if (p.platforms?.length) throw new UsageError("--platform is for a multi-arch index");
  const r = p.reports[0];
  // Without a report copa updates every OS package: library settings would be silently lost.
  if (!r && (p.flags["pkg-types"] || p.flags["library-patch-level"]))
    throw new UsageError("--pkg-types and --library-patch-level need a report (-r) that lists the libraries");
  const libs = r ? planLibraries(r.libraries, p.libraries) : undefined;
  const os = p.libraries.packageTypes?.includes("os") ?? true;
  if (r && !os && !libs?.updates.length)
    throw new UsageError("--pkg-types library: the report has no library to update");
  const result = p.push
    ? await patchImage({
        id: `cli-${Date.now()}`,
        source: p.source,
        target: p.target,
        updates: r ? (os ? r.updates : []) : undefined,
        ...(libs?.updates.length ? { libraryUpdates: libs.updates } : {}),
        os: r?.os,
        buildkitAddr: p.addr,
        timeout: p.timeout,
        ignoreErrors: !!p.flags["ignore-errors"],
        executor: executor(),
        registry,
        onProgress: (stage, message) => say(`[${stage}] ${message}`),
      })
    : undefined;
  // Fixable: the OS findings patched here and the library findings planned.
  const planned = libs?.findings.filter((f) => f.reason === "Planned").length ?? 0;
  const counts = r && { ...r.counts, fixable: (os ? r.counts.fixable : 0) + planned };
  const summary: PatchSummary = result
    ? summarize(formatImageRef(p.source), result, r?.updates, counts)
    : await planOnly(registry, p.source, r?.updates, r?.os, counts);
  if (libs?.findings.length)
    summary.libraries = result?.libraries ? librariesAfter(libs.findings, result.libraries) : libs.findings;
  process.stdout.write(p.flags.json ? JSON.stringify(summary, null, 2) + "\n" : renderSummary(summary));
  return 0;
}

export async function patchCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, FLAGS);
  if (v.help) {
    process.stdout.write(patchUsage + "\n");
    return 0;
  }
  const p = await planFrom(v);
  for (const r of p.reports)
    say(
      `report ${r.platform}: ${r.counts.total} vulnerabilities, ${r.counts.fixable} fixable in ${r.updates.length} packages`,
    );
  const { credentials, dockerDir } = await credentialsFor(p);
  const registry = new RegistryClient({ credentials, insecureHosts: v["insecure-registry"] ?? [] });
  // copa is looked for only when a patch will run (a plan needs none).
  const executor = () =>
    localExecutor({ copaPath: v.copa, env: dockerDir ? { DOCKER_CONFIG: dockerDir } : {} });
  try {
    const resolved = await registry.resolve(p.source);
    if (!resolved)
      throw new PatchError("ImageNotFound", `source image ${formatImageRef(p.source)} not found`);
    return isIndex(resolved.body)
      ? await patchAnIndex(p, registry, executor)
      : await patchAnImage(p, registry, executor);
  } catch (err) {
    if (err instanceof PatchError) throw new Error(`${err.reason}: ${err.message}`, { cause: err });
    throw err;
  } finally {
    if (dockerDir) await rm(dockerDir, { recursive: true, force: true });
  }
}
