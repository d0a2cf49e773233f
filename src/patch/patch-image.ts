// Patch one image, honestly: resolve the source, plan against its package database,
// adopt an earlier push for the same plan, run copa, and verify the result in the
// registry. Shared by the worker and the `patch` CLI.
import {
  formatImageRef,
  type ImageRef,
  type LibraryUpdate,
  libraryUpdateProblem,
  type PackageUpdate,
  parsePlatform,
  PatchError,
  Reason,
  toUpdateManifest,
  type UpdateManifest,
  type VersionScheme,
} from "../api/index.ts";
import {
  type Descriptor,
  type PackageDB,
  readLibraries,
  readPackageDB,
  type RegistryClient,
} from "../registry/index.ts";
import { copaArgv } from "./argv.ts";
import type { Executor } from "./executor.ts";
import {
  copaLibraryReason,
  type LibraryPlanResult,
  planLibraryUpdates,
  trivyReport,
  verifyLibraryUpdates,
} from "./libraries.ts";
import { classifyCopaRun, type CopaVerdict } from "./outcome.ts";
import type { TrivyReport } from "./libraries.ts";
import { planUpdates, verifyUpdates, type Plan, type Verification } from "./plan.ts";
import type { SignatureInfo } from "./sign.ts";
import { stagingTag } from "./staging.ts";

import { parseDuration } from "../util/index.ts";

export type Stage = "resolve" | "plan" | "adopt" | "copa" | "verify" | "sign";

/** What a signer is told of a patched image (the worker turns it into attestations). */
export interface PatchedFacts {
  sourceDigest: string;
  patchedDigest: string;
  plan?: Plan;
  verification: Verification;
  /** copa's OpenVEX document, when the executor returns it. */
  vex?: string;
}

/**
 * Signs an image by digest (and attaches attestations); throws PatchError with a signing
 * reason. With one, copa pushes to a staging tag and the image gets its tag only once signed.
 */
export type ImageSigner = (
  image: ImageRef,
  facts: PatchedFacts,
  /** An image found under the target tag (adopted): signed only if it is not already. */
  o?: { adopted?: boolean },
) => Promise<SignatureInfo>;

/** copa's own --timeout when the spec gives none. @default "10m" */
export const DEFAULT_COPA_TIMEOUT = "10m";
/** The executor's hard limit is copa's --timeout plus this (copa gets to stop by itself first). @default 60_000 */
export const COPA_KILL_SLACK_MS = 60_000;

/** What every patch (of an image or of an index) is given. */
export interface EngineInput {
  /** Stable id of this attempt's work (PatchJob name + generation). */
  id: string;
  source: ImageRef;
  target: ImageRef;
  os?: { type: string; version: string };
  buildkitAddr: string;
  tls?: { caCert: string; cert: string; key: string };
  /** copa's --timeout, a Go duration. @default DEFAULT_COPA_TIMEOUT */
  timeout?: string;
  ignoreErrors?: boolean;
  executor: Executor;
  registry: RegistryClient;
  /** Stops copa (the worker is stopping). */
  signal?: AbortSignal;
  onProgress?: (stage: Stage, message: string) => void;
  onOutput?: (line: string) => void;
  /** Where a Job runs, and what owns it (the PatchJob), for the kubernetes executor. */
  namespace?: string;
  owner?: { apiVersion: string; kind: string; name: string; uid: string };
  /** The registry credentials copa uses for this run (dockerconfigjson text); `registry` carries the same. */
  dockerConfig?: string;
  /** Sign what is published; unsigned, nothing gets the target tag. @default no signing */
  sign?: ImageSigner;
}

export interface PatchImageInput extends EngineInput {
  /** @default linux/amd64 */
  platform?: string;
  /** Updates to make; undefined = update every package (copa without a report). */
  updates?: PackageUpdate[];
  /** Python and Node.js package updates (with `updates`, which may then be empty). */
  libraryUpdates?: LibraryUpdate[];
  /** copa's environment for runs with library updates only (HTTPS_PROXY, NO_PROXY). */
  libraryEnv?: Record<string, string>;
  /** Allow patching one platform of an index on its own (the target then holds only it). @default false */
  platformOfIndex?: boolean;
}

interface Common {
  sourceDigest: string;
  before: PackageDB;
  plan?: Plan;
  /** What became of the library updates (when there were any). */
  libraries?: LibraryOutcome;
}

/** The library updates of a patch, each where it ended. */
export interface LibraryOutcome {
  fixed: Array<LibraryUpdate & { version: string }>;
  /** Handed to copa, but below the fix in the patched image. */
  notFixed: Array<LibraryUpdate & { version?: string }>;
  /** copa could not update them (the OS packages were patched without them): its reason. */
  notPatchable: LibraryUpdate[];
  notPatchableReason?: string;
  /** At or above the fix in the source image already. */
  satisfied: LibraryUpdate[];
  /** Not found in the image where the report said. */
  absent: LibraryUpdate[];
}

export type PatchImageResult =
  | (Common & {
      kind: "patched";
      adopted: boolean;
      patchedRef: string;
      patchedDigest: string;
      verification: Verification;
      vex?: string;
      copaMs?: number;
      /** Set when the image was signed (EngineInput.sign). */
      signature?: SignatureInfo;
    })
  | (Common & { kind: "noop"; message: string });

export function layersExtend(base: Descriptor[], top: Descriptor[]): boolean {
  return top.length > base.length && base.every((l, i) => top[i]?.digest === l.digest);
}

interface Source {
  manifest: { layers: Descriptor[] };
  digest: string;
  before: PackageDB;
  plan?: Plan;
  libPlan?: LibraryPlanResult;
}

/** Resolve the source for the platform, read its package database, plan the updates. */
async function resolveAndPlan(input: PatchImageInput, platform: string): Promise<Source> {
  const progress = input.onProgress ?? (() => {});
  progress("resolve", `resolving ${formatImageRef(input.source)}`);
  const src = await input.registry.manifestFor(input.source, platform);
  if (!src)
    throw new PatchError(Reason.ImageNotFound, `source image ${formatImageRef(input.source)} not found`);
  if (src.indexDigest && !input.platformOfIndex)
    throw new PatchError(
      Reason.InvalidSpec,
      `${formatImageRef(input.source)} is a multi-arch index: a patch of ${platform} alone would replace ${formatImageRef(input.target)} with that one platform; patch the index (platform "all") instead`,
    );
  const before = await readPackageDB(input.registry, input.source, src.manifest.layers);
  if (!input.updates) {
    progress("plan", "no report: copa updates every package");
    return { manifest: src.manifest, digest: src.digest, before };
  }
  const plan = planUpdates(input.updates, before, input.os?.type);
  progress(
    "plan",
    `${plan.needed.length} updates needed, ${plan.satisfied.length} already satisfied, ${plan.absent.length} not installed`,
  );
  const libs = input.libraryUpdates ?? [];
  if (libs.length === 0) return { manifest: src.manifest, digest: src.digest, before, plan };
  // A PatchJob written by hand is checked as the controller checks a report's.
  libs.forEach((u, i) => {
    const problem = libraryUpdateProblem(u);
    if (problem)
      throw new PatchError(Reason.InvalidSpec, `spec.libraryUpdates[${i}] (${u.name}): ${problem}`);
  });
  const libPlan = planLibraryUpdates(
    libs,
    await readLibraries(input.registry, input.source, src.manifest.layers, libs),
  );
  progress(
    "plan",
    `${libPlan.needed.length} library updates needed, ${libPlan.satisfied.length} already satisfied, ${libPlan.absent.length} not found`,
  );
  return { manifest: src.manifest, digest: src.digest, before, plan, libPlan };
}

/** The patched image's OS packages and libraries against the plan (libraries: those handed to copa). */
async function verifyAgainstPlan(
  input: PatchImageInput,
  ref: ImageRef,
  layers: Descriptor[],
  src: Source,
  libs: LibraryUpdate[],
): Promise<{ v: Verification; libraries?: LibraryOutcome }> {
  const after = await readPackageDB(input.registry, ref, layers);
  const v = updateAllVerification(
    verifyUpdates(src.plan?.needed ?? [], after, src.before, input.os?.type),
    src.plan,
  );
  if (!src.libPlan) return { v };
  const lv = verifyLibraryUpdates(libs, await readLibraries(input.registry, ref, layers, libs));
  const asPackage = (u: LibraryUpdate) => ({
    name: u.name,
    installedVersion: u.installedVersion,
    fixedVersion: u.fixedVersion,
    ...(u.vulnerabilityIDs ? { vulnerabilityIDs: u.vulnerabilityIDs } : {}),
  });
  return {
    v: {
      ...v,
      fixed: [...v.fixed, ...lv.fixed.map(asPackage)],
      remaining: [...v.remaining, ...lv.remaining.map(asPackage)],
      fixedCVEs: [...new Set([...v.fixedCVEs, ...lv.fixedCVEs])].sort(),
    },
    libraries: {
      fixed: lv.fixed,
      notFixed: lv.remaining,
      notPatchable: src.libPlan.needed.filter((u) => !libs.includes(u)),
      satisfied: src.libPlan.satisfied,
      absent: src.libPlan.absent,
    },
  };
}

/** A redelivered request may find its own earlier push: adopt it rather than patch twice. */
async function adoptExisting(
  input: PatchImageInput,
  platform: string,
  src: Source,
): Promise<PatchImageResult | undefined> {
  const existing = await input.registry.manifestFor(input.target, platform).catch(() => undefined);
  if (!existing || !layersExtend(src.manifest.layers, existing.manifest.layers)) return undefined;
  const { v, libraries } = await verifyAgainstPlan(
    input,
    input.target,
    existing.manifest.layers,
    src,
    src.libPlan?.needed ?? [],
  );
  if (src.plan ? v.remaining.length > 0 : v.changed.length === 0) return undefined;
  input.onProgress?.(
    "adopt",
    `${formatImageRef(input.target)} already holds a patch of this source (${existing.digest})`,
  );
  return {
    kind: "patched",
    adopted: true,
    sourceDigest: src.digest,
    before: src.before,
    plan: src.plan,
    ...(libraries ? { libraries } : {}),
    patchedRef: formatImageRef(input.target),
    patchedDigest: existing.digest,
    verification: v,
  };
}

/**
 * What copa is handed for the plan: its native manifest (none in update-all mode), or
 * with library updates a Trivy report (the native format has no package paths).
 */
function manifestFor(
  input: PatchImageInput,
  platform: string,
  src: Source,
  libs: LibraryUpdate[],
): UpdateManifest | TrivyReport | undefined {
  const arch = parsePlatform(platform);
  if (!src.plan) return undefined;
  if (!input.os || !arch)
    throw new PatchError(Reason.InvalidSpec, "the spec has updates but no OS type and version");
  if (libs.length) return trivyReport(formatImageRef(input.source), input.os, arch, src.plan.needed, libs);
  return toUpdateManifest({
    os: { ...input.os, scheme: (src.before.format === "apk" ? "apk" : "dpkg") as VersionScheme },
    arch: arch.architecture,
    variant: arch.variant,
    updates: src.plan.needed.map((u) => ({
      name: u.name,
      installedVersion: u.installedVersion,
      fixedVersion: u.fixedVersion,
      vulnerabilityID: u.vulnerabilityIDs?.[0] ?? "",
    })),
  });
}

/** The target tag read back: a patch of the source whose packages are at the plan's versions. */
async function verifyPushed(
  input: PatchImageInput,
  platform: string,
  src: Source,
  run: {
    verdict: Exclude<CopaVerdict, { kind: "failed" }>;
    vex?: string;
    durationMs: number;
    libs: LibraryUpdate[];
    libFailure?: string;
  },
): Promise<PatchImageResult> {
  input.onProgress?.("verify", `reading ${formatImageRef(input.target)} back from the registry`);
  const pushed = await input.registry.manifestFor(input.target, platform);
  if (!pushed || !layersExtend(src.manifest.layers, pushed.manifest.layers)) {
    if (run.verdict.kind === "noop")
      return {
        kind: "noop",
        sourceDigest: src.digest,
        before: src.before,
        plan: src.plan,
        message: run.verdict.message,
      };
    throw new PatchError(
      Reason.VerificationFailed,
      `copa reported success but ${formatImageRef(input.target)} ${pushed ? "is not a patch of the source" : "does not exist"}`,
    );
  }
  if (pushed.digest === src.digest)
    throw new PatchError(Reason.VerificationFailed, "the patched image has the source's digest");
  const { v, libraries } = await verifyAgainstPlan(
    input,
    input.target,
    pushed.manifest.layers,
    src,
    run.libs,
  );
  if (src.plan && v.fixed.length === 0)
    throw new PatchError(
      Reason.VerificationFailed,
      `copa pushed ${pushed.digest} but none of the ${src.plan.needed.length + run.libs.length} planned updates is in it`,
    );
  return {
    kind: "patched",
    adopted: false,
    sourceDigest: src.digest,
    before: src.before,
    plan: src.plan,
    ...(libraries
      ? { libraries: { ...libraries, ...(run.libFailure ? { notPatchableReason: run.libFailure } : {}) } }
      : {}),
    patchedRef: formatImageRef(input.target),
    patchedDigest: pushed.digest,
    verification: v,
    vex: run.vex,
    copaMs: run.durationMs,
  };
}

export async function patchImage(input: PatchImageInput): Promise<PatchImageResult> {
  const platform = input.platform ?? "linux/amd64";
  const src = await resolveAndPlan(input, platform);
  const lp = src.libPlan;
  if (src.plan && src.plan.needed.length === 0 && !lp?.needed.length)
    return {
      kind: "noop",
      sourceDigest: src.digest,
      before: src.before,
      plan: src.plan,
      ...(lp
        ? {
            libraries: {
              fixed: [],
              notFixed: [],
              notPatchable: [],
              satisfied: lp.satisfied,
              absent: lp.absent,
            },
          }
        : {}),
      message: `nothing to update: ${src.plan.satisfied.length + (lp?.satisfied.length ?? 0)} planned updates already in the image, ${src.plan.absent.length} packages not installed${lp ? `, ${lp.absent.length} libraries not found` : ""}`,
    };
  const adopted = await adoptExisting(input, platform, src);
  // An adopted image is signed again: whatever holds the tag must be signed.
  if (adopted) return adopted.kind === "patched" && input.sign ? signed(input, adopted, true) : adopted;
  const timeout = input.timeout ?? DEFAULT_COPA_TIMEOUT;
  // Signing on: copa pushes to a staging tag; the target tag comes after the signature.
  const pushTo: ImageRef = input.sign
    ? { ...input.target, tag: stagingTag(input.target.tag ?? "latest") }
    : input.target;
  let libs = lp?.needed ?? [];
  let run = await runCopa(input, platform, src, pushTo, libs);
  let verdict = classifyCopaRun(run, timeout);
  let libFailure: string | undefined;
  // A library step's own failure (pip's "Connection refused" reads like an unreachable
  // BuildKit) is the libraries', whatever the verdict: not a reason to retry elsewhere.
  const libReason =
    verdict.kind === "failed" && libs.length
      ? libs.map((u) => copaLibraryReason(run.outputTail, u.name)).find(Boolean)
      : undefined;
  if (verdict.kind === "failed" && libs.length && (!verdict.transient || libReason)) {
    // copa's library support is experimental: when it fails, the libraries are listed
    // NotPatchable with copa's words and the OS packages are patched without them.
    libFailure = libReason ?? verdict.message;
    if (!src.plan?.needed.length)
      throw new PatchError(verdict.reason, `copa could not update the libraries: ${libFailure}`);
    input.onProgress?.("copa", `copa could not update the libraries (${libFailure}): the OS packages alone`);
    libs = [];
    // A run of its own (a Job's name is the run's id: the failed one is still there).
    run = await runCopa(input, platform, src, pushTo, libs, "-os");
    verdict = classifyCopaRun(run, timeout);
  }
  if (verdict.kind === "failed")
    throw new PatchError(verdict.reason, verdict.message, { transient: verdict.transient });
  const pushed = await verifyPushed({ ...input, target: pushTo }, platform, src, {
    verdict,
    vex: run.vex,
    durationMs: run.durationMs,
    libs,
    ...(libFailure ? { libFailure } : {}),
  });
  if (pushed.kind !== "patched" || !input.sign) return pushed;
  return publishSigned(input, pushTo, await signed(input, pushed));
}

/** One copa run: OS updates from the plan, and the library updates given (COPA_EXPERIMENTAL). */
function runCopa(
  input: PatchImageInput,
  platform: string,
  src: Source,
  pushTo: ImageRef,
  libs: LibraryUpdate[],
  idSuffix = "",
) {
  const timeout = input.timeout ?? DEFAULT_COPA_TIMEOUT;
  const source: ImageRef = { ...input.source, digest: src.digest };
  input.onProgress?.(
    "copa",
    `copa patch ${formatImageRef(source)} -> ${formatImageRef(pushTo)}${libs.length ? ` (with ${libs.length} library updates)` : ""}`,
  );
  return input.executor.run({
    id: input.id + idSuffix,
    manifest: manifestFor(input, platform, src, libs),
    // The proxy (to PyPI, npm) only where libraries are updated: OS runs stay as they were.
    ...(libs.length ? { env: { COPA_EXPERIMENTAL: "1", ...input.libraryEnv } } : {}),
    timeoutMs: parseDuration(timeout) + COPA_KILL_SLACK_MS,
    signal: input.signal,
    onOutput: input.onOutput,
    namespace: input.namespace,
    owner: input.owner,
    ...(input.dockerConfig !== undefined ? { dockerConfig: input.dockerConfig } : {}),
    args: (paths) =>
      copaArgv({
        image: source,
        target: pushTo,
        buildkitAddr: input.buildkitAddr,
        manifestPath: paths.manifest,
        vexPath: paths.vex,
        timeout,
        ignoreErrors: input.ignoreErrors,
        tls: input.tls,
        ...(libs.length
          ? { libraries: { pkgTypes: src.plan?.needed.length ? "os,library" : "library" } }
          : {}),
      }),
  });
}

async function signed(
  input: PatchImageInput,
  r: Extract<PatchImageResult, { kind: "patched" }>,
  adopted = false,
): Promise<Extract<PatchImageResult, { kind: "patched" }>> {
  input.onProgress?.("sign", `signing ${r.patchedDigest} and attesting its VEX and provenance`);
  const image: ImageRef = {
    registry: input.target.registry,
    repository: input.target.repository,
    digest: r.patchedDigest,
  };
  const signature = await input.sign!(
    image,
    {
      sourceDigest: r.sourceDigest,
      patchedDigest: r.patchedDigest,
      plan: r.plan,
      verification: r.verification,
      vex: r.vex,
    },
    { adopted },
  );
  return { ...r, signature };
}

/** The signed image from its staging tag to the target tag (the same repository: only the manifest moves). */
async function publishSigned(
  input: PatchImageInput,
  staging: ImageRef,
  r: Extract<PatchImageResult, { kind: "patched" }>,
): Promise<PatchImageResult> {
  const m = await input.registry.manifestBytes(staging, r.patchedDigest);
  await input.registry.putManifest(input.target, m.mediaType, m.bytes);
  return { ...r, patchedRef: formatImageRef(input.target) };
}

/** In update-all mode there is no plan: what changed is what was fixed. */
export function updateAllVerification(v: Verification, plan: Plan | undefined): Verification {
  if (plan) return v;
  return {
    ...v,
    fixed: v.changed.map((c) => ({ name: c.name, installedVersion: c.from, fixedVersion: c.to })),
    remaining: [],
  };
}
