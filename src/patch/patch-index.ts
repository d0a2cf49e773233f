// Patch a multi-arch image index as one: plan each platform against its own package
// database, run copa once in its report-directory mode (one native manifest per
// platform to patch; every other platform keeps its manifest), verify every platform
// of the pushed index, and never leave a tag pointing at an index that lost a platform.
//
// Publishing rule: copa pushes to a staging tag (`<target>-vp-staging`, and each patched
// platform to `<staging>-<arch>`), never to the target itself; only an index that
// verified platform by platform is then put under the target tag. So a failed platform
// means nothing published under the tag, whatever copa did with its staging tag (copa
// 0.14.2 was seen pushing an index with the failed platform's original manifest when
// the failing platform was the native one). With `publishPartial`, vuln-patcher
// assembles the index itself: the platforms that patched and verified, the others'
// original manifests.
//
// Attestation entries (platform unknown/unknown) are not carried over: they attest the
// source manifests, and a statement about those is false of the patched ones.
import {
  formatImageRef,
  type ImageRef,
  type PackageUpdate,
  parsePlatform,
  PatchError,
  type Platform,
  PlatformResult,
  Reason,
  toUpdateManifest,
  type UpdateManifest,
  type VersionScheme,
} from "../api/index.ts";
import {
  type Descriptor,
  type Index,
  isIndex,
  MediaType,
  type PackageDB,
  readPackageDB,
} from "../registry/index.ts";
import { copaArgv } from "./argv.ts";
import { classifyCopaRun, type CopaVerdict } from "./outcome.ts";

import { parseDuration } from "../util/index.ts";
import { planUpdates, verifyUpdates, type Plan, type Verification } from "./plan.ts";
import {
  COPA_KILL_SLACK_MS,
  DEFAULT_COPA_TIMEOUT,
  layersExtend,
  updateAllVerification,
  type EngineInput,
} from "./patch-image.ts";
import { stagingTag } from "./staging.ts";
import type { SignatureInfo } from "./sign.ts";

export interface IndexPlatformRequest {
  platform: string;
  /** The report's updates; undefined = update every package of this platform. */
  updates?: PackageUpdate[];
}

export interface PatchIndexInput extends EngineInput {
  /** The source index: repository and tag, pinned by the index digest where known. */
  source: ImageRef;
  /** The platforms to patch. Undefined = every platform of the index, update-all mode. */
  platforms?: IndexPlatformRequest[];
  /** Publish the platforms that patched, the others unchanged, when some fail. @default false */
  publishPartial?: boolean;
}

export interface PlatformOutcome {
  platform: string;
  result: PlatformResult;
  sourceDigest: string;
  /** The manifest for this platform in the published index (or the arch tag when not published). */
  digest?: string;
  before: PackageDB;
  plan?: Plan;
  verification?: Verification;
  reason?: Reason;
  message: string;
}

export interface PatchIndexResult {
  kind: "patched" | "noop" | "failed";
  sourceIndexDigest: string;
  patchedRef: string;
  /** The published index (patched, or adopted from an earlier identical run). */
  indexDigest?: string;
  adopted: boolean;
  /** Every platform of the source index, in its order. */
  platforms: PlatformOutcome[];
  /** For a failure: the first failed platform's reason and a message naming every failed platform. */
  reason?: Reason;
  message: string;
  copaMs?: number;
  /** Set when the index was signed (EngineInput.sign). */
  signature?: SignatureInfo;
}

export function platformKey(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** copa's per-platform tag suffix (`-arm64`, `-arm-v7`). */
export function archTagSuffix(p: Platform): string {
  return `-${p.architecture}${p.variant ? `-${p.variant}` : ""}`;
}

function samePlatform(d: Descriptor, want: Platform): boolean {
  const p = d.platform;
  return (
    !!p &&
    p.os === want.os &&
    p.architecture === want.architecture &&
    (p.variant ?? "") === (want.variant ?? "")
  );
}

/** The image entries of an index: attestations (unknown/unknown) left out. */
export function imageEntries(index: Index): Descriptor[] {
  return index.manifests.filter((d) => d.platform && d.platform.os !== "unknown");
}

interface Planned {
  entry: Descriptor;
  platform: Platform;
  key: string;
  before: PackageDB;
  layers: Descriptor[];
  /** undefined: not asked for (keeps its manifest). */
  request?: IndexPlatformRequest;
  plan?: Plan;
  patch: boolean;
}

/** The source index resolved, and each platform planned against its own package database. */
async function planIndex(input: PatchIndexInput) {
  const reg = input.registry;
  input.onProgress?.("resolve", `resolving the index ${formatImageRef(input.source)}`);
  const resolved = await reg.resolve(input.source);
  if (!resolved)
    throw new PatchError(Reason.ImageNotFound, `source image ${formatImageRef(input.source)} not found`);
  if (!isIndex(resolved.body))
    throw new PatchError(
      Reason.InvalidSpec,
      `${formatImageRef(input.source)} is a single-platform image, not an index: patch it by its platform`,
    );
  const source: ImageRef = { ...input.source, digest: resolved.digest };
  const entries = imageEntries(resolved.body);
  const requests = new Map<string, IndexPlatformRequest>();
  for (const r of input.platforms ?? []) {
    const p = parsePlatform(r.platform);
    if (!p) throw new PatchError(Reason.InvalidSpec, `invalid platform ${JSON.stringify(r.platform)}`);
    if (!entries.some((e) => samePlatform(e, p)))
      throw new PatchError(
        Reason.ImageNotFound,
        `${formatImageRef(source)} has no ${r.platform} image (it has ${entries.map((e) => platformKey(e.platform!)).join(", ")})`,
      );
    requests.set(platformKey(p), r);
  }
  const planned: Planned[] = [];
  for (const entry of entries) {
    const platform = entry.platform!;
    const key = platformKey(platform);
    const m = await reg.resolve({ ...source, tag: undefined, digest: entry.digest });
    if (!m || isIndex(m.body))
      throw new PatchError(Reason.ImageNotFound, `${key} of ${formatImageRef(source)} is not a manifest`);
    const before = await readPackageDB(reg, source, m.body.layers);
    const request = input.platforms ? requests.get(key) : { platform: key };
    const plan = request?.updates ? planUpdates(request.updates, before, input.os?.type) : undefined;
    planned.push({
      entry,
      platform,
      key,
      before,
      layers: m.body.layers,
      request,
      plan,
      patch: !!request && (!plan || plan.needed.length > 0),
    });
  }
  input.onProgress?.(
    "plan",
    planned
      .map((p) =>
        !p.request
          ? `${p.key}: unchanged`
          : p.plan
            ? `${p.key}: ${p.plan.needed.length} updates needed, ${p.plan.satisfied.length} satisfied`
            : `${p.key}: update every package`,
      )
      .join("; "),
  );
  return { resolved, source, planned };
}

/** A platform that keeps its manifest. */
function kept(p: Planned): PlatformOutcome {
  return {
    platform: p.key,
    result: p.request ? PlatformResult.UpToDate : PlatformResult.Unchanged,
    sourceDigest: p.entry.digest,
    digest: p.entry.digest,
    before: p.before,
    plan: p.plan,
    message: p.request
      ? `nothing to update: ${p.plan?.satisfied.length ?? 0} planned updates already in the image`
      : "no report for this platform: original manifest kept",
  };
}

/** copa's report directory: one native manifest per platform to patch (none in update-all mode). */
function reportManifests(input: PatchIndexInput, planned: Planned[]): Record<string, UpdateManifest> {
  const manifests: Record<string, UpdateManifest> = {};
  for (const p of planned) {
    if (!p.patch || !p.plan) continue;
    if (!input.os)
      throw new PatchError(Reason.InvalidSpec, "the spec has updates but no OS type and version");
    manifests[`${p.key.replaceAll("/", "-")}.json`] = toUpdateManifest({
      os: { ...input.os, scheme: (p.before.format === "apk" ? "apk" : "dpkg") as VersionScheme },
      arch: p.platform.architecture,
      variant: p.platform.variant,
      updates: p.plan.needed.map((u) => ({
        name: u.name,
        installedVersion: u.installedVersion,
        fixedVersion: u.fixedVersion,
        vulnerabilityID: u.vulnerabilityIDs?.[0] ?? "",
      })),
    });
  }
  if (Object.keys(manifests).length && planned.some((p) => p.patch && !p.plan))
    throw new PatchError(Reason.InvalidSpec, "mixing report and update-all platforms in one index patch");
  return manifests;
}

/** copa ran: verify the staging index platform by platform, then (only then) publish it under the target tag. */
async function publishVerified(
  input: PatchIndexInput,
  planned: Planned[],
  staging: ImageRef,
  noop: string | undefined,
  sourceIndexDigest: string,
): Promise<Omit<PatchIndexResult, "sourceIndexDigest" | "adopted" | "copaMs">> {
  const reg = input.registry;
  let signature: SignatureInfo | undefined;
  const patchedRef = formatImageRef(input.target);
  input.onProgress?.(
    "verify",
    `reading ${formatImageRef(staging)} back from the registry, platform by platform`,
  );
  const v = await verifyIndex(input, planned, { adopting: false, at: staging });
  if (v && input.sign) signature = await signIndex(input, sourceIndexDigest, v);
  if (!v) {
    if (noop !== undefined) return { kind: "noop", patchedRef, platforms: planned.map(kept), message: noop };
    throw new PatchError(
      Reason.VerificationFailed,
      `copa reported success but ${formatImageRef(staging)} does not exist`,
    );
  }
  // Verified: now, and only now, the index goes under the target tag (same bytes, same digest).
  const bytes = await reg.manifestBytes(staging, v.indexDigest!);
  const published = await reg.putManifest(input.target, bytes.mediaType, bytes.bytes);
  const back = await reg.resolve(input.target);
  if (published !== v.indexDigest || back?.digest !== v.indexDigest)
    throw new PatchError(
      Reason.VerificationFailed,
      `published ${v.indexDigest} to ${patchedRef} but it holds ${back?.digest ?? "nothing"}`,
    );
  input.onProgress?.("verify", `published ${patchedRef}@${v.indexDigest}`);
  return {
    ...v,
    patchedRef,
    message: v.message.replace(formatImageRef(staging), patchedRef),
    ...(signature ? { signature } : {}),
  };
}

/** Signing on: the verified index is signed (with what its platforms' verifications say) before it gets its tag. */
async function signIndex(
  input: PatchIndexInput,
  sourceIndexDigest: string,
  v: { indexDigest?: string; platforms: PlatformOutcome[] },
): Promise<SignatureInfo> {
  input.onProgress?.("sign", `signing the index ${v.indexDigest} and attesting its VEX and provenance`);
  const done = v.platforms.filter((p) => p.verification);
  const fixed = done.flatMap((p) => p.verification!.fixed);
  return input.sign!(
    { registry: input.target.registry, repository: input.target.repository, digest: v.indexDigest! },
    {
      sourceDigest: sourceIndexDigest,
      patchedDigest: v.indexDigest!,
      verification: {
        fixed,
        remaining: done.flatMap((p) => p.verification!.remaining),
        fixedCVEs: [...new Set(done.flatMap((p) => p.verification!.fixedCVEs))].sort(),
        changed: done.flatMap((p) =>
          p.verification!.changed.map((c) => ({ ...c, name: `${c.name} (${p.platform})` })),
        ),
      },
    },
  );
}

/**
 * copa failed: find out, from the registry, which platforms did patch (their arch tags).
 * With publishPartial, publish those with the others unchanged; otherwise nothing goes
 * under the tag and the platforms that patched are NotPublished.
 */
async function salvage(
  input: PatchIndexInput,
  planned: Planned[],
  staging: ImageRef,
  verdict: Extract<CopaVerdict, { kind: "failed" }>,
  src: { index: Index; mediaType: string; ref: ImageRef },
): Promise<Omit<PatchIndexResult, "sourceIndexDigest" | "adopted" | "copaMs">> {
  const patchedRef = formatImageRef(input.target);
  input.onProgress?.("verify", "copa failed: reading each platform's own tag to see which platforms patched");
  const outcomes: PlatformOutcome[] = [];
  for (const p of planned) {
    if (!p.patch) {
      outcomes.push(kept(p));
      continue;
    }
    const archRef: ImageRef = { ...staging, tag: `${staging.tag}${archTagSuffix(p.platform)}` };
    const checked = await checkPatchedPlatform(input, p, archRef).catch(() => undefined);
    outcomes.push(
      checked ?? {
        platform: p.key,
        result: PlatformResult.Failed,
        sourceDigest: p.entry.digest,
        before: p.before,
        plan: p.plan,
        reason: verdict.reason,
        message: `${p.key}: ${verdict.message}`,
      },
    );
  }
  const failed = outcomes.filter((o) => o.result === PlatformResult.Failed);
  // Every platform patched and copa still failed (pushing the index, say): its own reason.
  if (failed.length === 0) throw new PatchError(verdict.reason, verdict.message);
  const failedNames = failed.map((o) => o.platform).join(", ");
  const patchedOk = outcomes.filter((o) => o.result === PlatformResult.Patched);
  if (
    // Signing on: a partial index is not published (it would be unsigned); see docs/signing.md.
    input.publishPartial &&
    !input.sign &&
    patchedOk.length > 0 &&
    patchedOk.length < planned.filter((p) => p.patch).length
  ) {
    input.onProgress?.("verify", `publishing ${patchedRef} with ${failedNames} unchanged (publishPartial)`);
    const indexDigest = await publishIndex(input, src.index, src.mediaType, src.ref, outcomes);
    return {
      kind: "patched",
      patchedRef,
      indexDigest,
      platforms: outcomes,
      reason: failed[0]?.reason,
      message: `published ${patchedRef}@${indexDigest} with ${failedNames} unpatched (failed: ${verdict.message})`,
    };
  }
  return {
    kind: "failed",
    patchedRef,
    platforms: outcomes.map((o) =>
      o.result === PlatformResult.Patched
        ? {
            ...o,
            result: PlatformResult.NotPublished,
            message: `${o.platform} patched (${o.digest}), but the index was not published: ${failedNames} failed`,
          }
        : o,
    ),
    reason: failed[0]?.reason ?? verdict.reason,
    message: `${failedNames} failed, so ${patchedRef} was not published: ${verdict.message}`,
  };
}

export async function patchIndex(input: PatchIndexInput): Promise<PatchIndexResult> {
  const { resolved, source, planned } = await planIndex(input);
  const patchedRef = formatImageRef(input.target);
  const base = { sourceIndexDigest: resolved.digest, adopted: false };
  if (!planned.some((p) => p.patch))
    return {
      ...base,
      kind: "noop",
      patchedRef,
      platforms: planned.map(kept),
      message: "nothing to update on any platform",
    };
  // A redelivered request may find its own earlier index: adopt it rather than patch twice.
  const adopted = await verifyIndex(input, planned, { adopting: true }).catch(() => undefined);
  if (adopted) {
    input.onProgress?.("adopt", `${patchedRef} already holds a patch of this index (${adopted.indexDigest})`);
    return { ...adopted, sourceIndexDigest: resolved.digest, adopted: true };
  }
  const manifests = reportManifests(input, planned);
  const reportMode = Object.keys(manifests).length > 0;
  const timeout = input.timeout ?? DEFAULT_COPA_TIMEOUT;
  const toPatch = planned.filter((p) => p.patch);
  input.onProgress?.(
    "copa",
    `copa patch ${formatImageRef(source)} (${toPatch.map((p) => p.key).join(", ")}) -> ${patchedRef}`,
  );
  const staging: ImageRef = { ...input.target, tag: stagingTag(input.target.tag!) };
  const run = await input.executor.run({
    id: input.id,
    ...(reportMode ? { manifests } : {}),
    timeoutMs: parseDuration(timeout) + COPA_KILL_SLACK_MS,
    signal: input.signal,
    onOutput: input.onOutput,
    namespace: input.namespace,
    owner: input.owner,
    ...(input.dockerConfig !== undefined ? { dockerConfig: input.dockerConfig } : {}),
    args: (paths) =>
      copaArgv({
        image: source,
        target: staging,
        buildkitAddr: input.buildkitAddr,
        manifestPath: reportMode ? paths.manifest : undefined,
        timeout,
        ignoreErrors: input.ignoreErrors,
        tls: input.tls,
        // update-all on part of the index: copa preserves the other platforms.
        platforms: !reportMode && input.platforms ? toPatch.map((p) => p.key) : undefined,
      }),
  });
  const verdict = classifyCopaRun(run, timeout);
  if (verdict.kind === "failed" && verdict.transient)
    throw new PatchError(verdict.reason, verdict.message, { transient: true });
  const r =
    verdict.kind === "failed"
      ? await salvage(input, planned, staging, verdict, {
          index: resolved.body as Index,
          mediaType: resolved.mediaType,
          ref: source,
        })
      : await publishVerified(
          input,
          planned,
          staging,
          verdict.kind === "noop" ? verdict.message : undefined,
          resolved.digest,
        );
  return { ...r, ...base, copaMs: run.durationMs };
}

/** One platform's patched manifest (under `ref`), checked against its source and plan. */
async function checkPatchedPlatform(
  input: PatchIndexInput,
  p: Planned,
  ref: ImageRef,
): Promise<PlatformOutcome | undefined> {
  const m = await input.registry.manifestFor(ref, p.key);
  if (!m || m.digest === p.entry.digest || !layersExtend(p.layers, m.manifest.layers)) return undefined;
  const after = await readPackageDB(input.registry, ref, m.manifest.layers);
  const v = updateAllVerification(
    verifyUpdates(p.plan?.needed ?? [], after, p.before, input.os?.type),
    p.plan,
  );
  if (p.plan ? v.remaining.length > 0 : v.changed.length === 0) return undefined;
  return {
    platform: p.key,
    result: PlatformResult.Patched,
    sourceDigest: p.entry.digest,
    digest: m.digest,
    before: p.before,
    plan: p.plan,
    verification: v,
    message: `${v.fixed.length} packages updated`,
  };
}

/**
 * The target index, checked platform by platform: every source platform present, the
 * patched ones extending their source's layers with the planned versions in them, the
 * others byte-for-byte the source's manifest. Undefined when it is not such an index.
 */
async function verifyIndex(
  input: PatchIndexInput,
  planned: Planned[],
  o: { adopting: boolean; at?: ImageRef },
): Promise<Omit<PatchIndexResult, "adopted"> | undefined> {
  const reg = input.registry;
  const at = o.at ?? input.target;
  const r = await reg.resolve(at);
  if (!r) return undefined;
  const patchedRef = formatImageRef(at);
  if (!isIndex(r.body)) {
    if (o.adopting) return undefined;
    throw new PatchError(Reason.VerificationFailed, `${patchedRef} is a single manifest, not an index`);
  }
  const target = r.body;
  const outcomes: PlatformOutcome[] = [];
  for (const p of planned) {
    const d = target.manifests.find((e) => samePlatform(e, p.platform));
    if (!d) {
      if (o.adopting) return undefined;
      throw new PatchError(Reason.VerificationFailed, `the patched index ${patchedRef} lacks ${p.key}`);
    }
    if (!p.patch) {
      if (d.digest !== p.entry.digest) {
        if (o.adopting) return undefined;
        throw new PatchError(
          Reason.VerificationFailed,
          `${p.key} should have kept its manifest ${p.entry.digest} in ${patchedRef}, found ${d.digest}`,
        );
      }
      outcomes.push({
        platform: p.key,
        result: p.request ? PlatformResult.UpToDate : PlatformResult.Unchanged,
        sourceDigest: p.entry.digest,
        digest: d.digest,
        before: p.before,
        plan: p.plan,
        message: p.request
          ? "already up to date: original manifest kept"
          : "no report: original manifest kept",
      });
      continue;
    }
    const checked = await checkPatchedPlatform(input, p, { ...at, tag: undefined, digest: r.digest });
    if (!checked) {
      if (o.adopting) return undefined;
      throw new PatchError(
        Reason.VerificationFailed,
        `${p.key} in ${patchedRef}@${r.digest} is not a patch of ${p.entry.digest} with the planned updates`,
      );
    }
    outcomes.push(checked);
  }
  return {
    kind: "patched",
    sourceIndexDigest: "",
    patchedRef,
    indexDigest: r.digest,
    platforms: outcomes,
    message: `patched index ${patchedRef}@${r.digest}: ${outcomes
      .map((x) => `${x.platform} ${x.result}`)
      .join(", ")}`,
  };
}

/** publishPartial: the patched platforms plus the others' original manifests, in source order. */
async function publishIndex(
  input: PatchIndexInput,
  sourceIndex: Index,
  sourceMediaType: string,
  source: ImageRef,
  outcomes: PlatformOutcome[],
): Promise<string> {
  const reg = input.registry;
  if (input.target.registry !== source.registry)
    throw new PatchError(
      Reason.InvalidSpec,
      `publishPartial keeps the failed platforms' original manifests, which live in ${source.registry}; the target ${formatImageRef(input.target)} is in another registry`,
    );
  const manifests: Descriptor[] = [];
  for (const entry of imageEntries(sourceIndex)) {
    const o = outcomes.find((x) => x.sourceDigest === entry.digest);
    if (o?.result === PlatformResult.Patched && o.digest) {
      const m = await reg.manifestBytes(input.target, o.digest);
      manifests.push({
        mediaType: m.mediaType,
        digest: o.digest,
        size: m.bytes.length,
        platform: entry.platform,
      });
      continue;
    }
    if (input.target.repository !== source.repository) {
      // Another repository: make the original manifest and its blobs exist there too.
      const m = await reg.manifestBytes(source, entry.digest);
      const body = JSON.parse(Buffer.from(m.bytes).toString("utf8")) as {
        config: Descriptor;
        layers: Descriptor[];
      };
      for (const b of [body.config, ...body.layers]) await reg.mountBlob(input.target, b.digest, source);
      await reg.putManifest({ ...input.target, tag: undefined, digest: entry.digest }, m.mediaType, m.bytes);
    }
    manifests.push(entry);
  }
  const mediaType = sourceMediaType === MediaType.DockerList ? MediaType.DockerList : MediaType.OciIndex;
  const index = { schemaVersion: 2, mediaType, manifests };
  const digest = await reg.putManifest(
    input.target,
    mediaType,
    new TextEncoder().encode(JSON.stringify(index)),
  );
  const back = await reg.resolve(input.target);
  if (back?.digest !== digest)
    throw new PatchError(
      Reason.VerificationFailed,
      `pushed ${digest} to ${formatImageRef(input.target)} but it holds ${back?.digest}`,
    );
  return digest;
}
