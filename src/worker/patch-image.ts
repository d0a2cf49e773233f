// Patch one image, honestly: resolve the source, plan against its package database,
// adopt an earlier push for the same plan, run copa, and verify the result in the
// registry. Shared by the worker and the `patch` CLI.
import { formatImageRef, type ImageRef } from "../api/imageref.ts";
import type { PackageUpdate } from "../api/patchjob.ts";
import { parsePlatform } from "../api/report.ts";
import { toUpdateManifest } from "../api/convert.ts";
import type { VersionScheme } from "../api/version.ts";
import { copaArgv } from "../patch/argv.ts";
import type { Executor } from "../patch/executor.ts";
import { classifyCopaRun } from "../patch/outcome.ts";
import type { Descriptor, RegistryClient } from "../registry/client.ts";
import { readPackageDB, type PackageDB } from "../registry/pkgdb.ts";
import { PatchError, Reason } from "../util/errors.ts";
import { planUpdates, verifyUpdates, type Plan, type Verification } from "./plan.ts";
import { parseDuration } from "../util/duration.ts";

export type Stage = "resolve" | "plan" | "adopt" | "copa" | "verify";

export interface PatchImageInput {
  /** Stable id of this attempt's work (PatchJob name + generation). */
  id: string;
  source: ImageRef;
  /** @default linux/amd64 */
  platform?: string;
  target: ImageRef;
  /** Updates to make; undefined = update every package (copa without a report). */
  updates?: PackageUpdate[];
  os?: { type: string; version: string };
  buildkitAddr: string;
  tls?: { caCert: string; cert: string; key: string };
  /** Go duration. @default 10m */
  timeout?: string;
  ignoreErrors?: boolean;
  executor: Executor;
  registry: RegistryClient;
  signal?: AbortSignal;
  onProgress?: (stage: Stage, message: string) => void;
  onOutput?: (line: string) => void;
  namespace?: string;
  owner?: { apiVersion: string; kind: string; name: string; uid: string };
  /** Allow patching one platform of an index on its own (the target then holds only it). @default false */
  platformOfIndex?: boolean;
}

interface Common {
  sourceDigest: string;
  before: PackageDB;
  plan?: Plan;
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
    })
  | (Common & { kind: "noop"; message: string });

export function layersExtend(base: Descriptor[], top: Descriptor[]): boolean {
  return top.length > base.length && base.every((l, i) => top[i]?.digest === l.digest);
}

export async function patchImage(input: PatchImageInput): Promise<PatchImageResult> {
  const progress = input.onProgress ?? (() => {});
  const platform = input.platform ?? "linux/amd64";
  const reg = input.registry;

  progress("resolve", `resolving ${formatImageRef(input.source)}`);
  const src = await reg.manifestFor(input.source, platform);
  if (!src)
    throw new PatchError(Reason.ImageNotFound, `source image ${formatImageRef(input.source)} not found`);
  if (src.indexDigest && !input.platformOfIndex)
    throw new PatchError(
      Reason.InvalidSpec,
      `${formatImageRef(input.source)} is a multi-arch index: a patch of ${platform} alone would replace ${formatImageRef(input.target)} with that one platform; patch the index (platform "all") instead`,
    );
  const sourceDigest = src.digest;
  const before = await readPackageDB(reg, input.source, src.manifest.layers);

  let plan: Plan | undefined;
  if (input.updates) {
    plan = planUpdates(input.updates, before, input.os?.type);
    progress(
      "plan",
      `${plan.needed.length} updates needed, ${plan.satisfied.length} already satisfied, ${plan.absent.length} not installed`,
    );
    if (plan.needed.length === 0) {
      return {
        kind: "noop",
        sourceDigest,
        before,
        plan,
        message: `nothing to update: ${plan.satisfied.length} planned updates already in the image, ${plan.absent.length} packages not installed`,
      };
    }
  } else {
    progress("plan", "no report: copa updates every package");
  }

  // A redelivered request may find its own earlier push: adopt it rather than patch twice.
  const existing = await reg.manifestFor(input.target, platform).catch(() => undefined);
  if (existing && layersExtend(src.manifest.layers, existing.manifest.layers)) {
    const after = await readPackageDB(reg, input.target, existing.manifest.layers);
    const v = verifyUpdates(plan?.needed ?? [], after, before, input.os?.type);
    if (plan ? v.remaining.length === 0 : v.changed.length > 0) {
      progress(
        "adopt",
        `${formatImageRef(input.target)} already holds a patch of this source (${existing.digest})`,
      );
      return {
        kind: "patched",
        adopted: true,
        sourceDigest,
        before,
        plan,
        patchedRef: formatImageRef(input.target),
        patchedDigest: existing.digest,
        verification: updateAllVerification(v, plan),
      };
    }
  }

  const arch = parsePlatform(platform);
  const manifest =
    plan && input.os && arch
      ? toUpdateManifest({
          os: { ...input.os, scheme: (before.format === "apk" ? "apk" : "dpkg") as VersionScheme },
          arch: arch.architecture,
          variant: arch.variant,
          updates: plan.needed.map((u) => ({
            name: u.name,
            installedVersion: u.installedVersion,
            fixedVersion: u.fixedVersion,
            vulnerabilityID: u.vulnerabilityIDs?.[0] ?? "",
          })),
        })
      : undefined;
  if (plan && !manifest)
    throw new PatchError(Reason.InvalidSpec, "the spec has updates but no OS type and version");
  const timeout = input.timeout ?? "10m";
  const source: ImageRef = { ...input.source, digest: sourceDigest };
  progress("copa", `copa patch ${formatImageRef(source)} -> ${formatImageRef(input.target)}`);
  const run = await input.executor.run({
    id: input.id,
    manifest,
    timeoutMs: parseDuration(timeout) + 60_000,
    signal: input.signal,
    onOutput: input.onOutput,
    namespace: input.namespace,
    owner: input.owner,
    args: (paths) =>
      copaArgv({
        image: source,
        target: input.target,
        buildkitAddr: input.buildkitAddr,
        manifestPath: paths.manifest,
        vexPath: paths.vex,
        timeout,
        ignoreErrors: input.ignoreErrors,
        tls: input.tls,
      }),
  });
  const verdict = classifyCopaRun(run, timeout);
  if (verdict.kind === "failed")
    throw new PatchError(verdict.reason, verdict.message, { transient: verdict.transient });

  progress("verify", `reading ${formatImageRef(input.target)} back from the registry`);
  const pushed = await reg.manifestFor(input.target, platform);
  if (!pushed || !layersExtend(src.manifest.layers, pushed.manifest.layers)) {
    if (verdict.kind === "noop")
      return { kind: "noop", sourceDigest, before, plan, message: verdict.message };
    throw new PatchError(
      Reason.VerificationFailed,
      `copa reported success but ${formatImageRef(input.target)} ${pushed ? "is not a patch of the source" : "does not exist"}`,
    );
  }
  if (pushed.digest === sourceDigest)
    throw new PatchError(Reason.VerificationFailed, "the patched image has the source's digest");
  const after = await readPackageDB(reg, input.target, pushed.manifest.layers);
  const v = updateAllVerification(verifyUpdates(plan?.needed ?? [], after, before, input.os?.type), plan);
  if (plan && v.fixed.length === 0) {
    throw new PatchError(
      Reason.VerificationFailed,
      `copa pushed ${pushed.digest} but none of the ${plan.needed.length} planned updates is in it`,
    );
  }
  return {
    kind: "patched",
    adopted: false,
    sourceDigest,
    before,
    plan,
    patchedRef: formatImageRef(input.target),
    patchedDigest: pushed.digest,
    verification: v,
    vex: run.vex,
    copaMs: run.durationMs,
  };
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
