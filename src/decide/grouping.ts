// Multi-arch grouping, pure. sbomscanner writes one VulnerabilityReport per platform of
// an index; patching each on its own and pushing `<tag>-patched` per platform would
// leave the tag holding one platform and break every node of the others. So the
// PatchJobs of reports that share an index are *members* of one index PatchJob
// (image.platform "all"), which patches every platform in one copa run and publishes
// one index. The members keep their own status (the platform's result, the index
// digest it ended in); only the index PatchJob is queued.
import { createHash } from "node:crypto";
import { patchJobNameForImage } from "./naming.ts";
import {
  DEFAULT_TAG_SUFFIX,
  DEFAULT_TIMEOUT,
  type ImageSpec,
  type PatchJob,
  type PatchJobSpec,
  type PatchJobStatus,
  Phase,
  type PlatformPatch,
  Reason,
  Source,
  type VulnerabilityCounts,
} from "../api/index.ts";

/** On a member: the name of its index PatchJob. */
export const INDEX_GROUP_LABEL = "vulnpatcher.io/index-group";
/** On an index PatchJob. */
export const INDEX_LABEL = "vulnpatcher.io/index";

export interface GroupSettings {
  tagSuffix?: string;
  timeout?: string;
  ignoreErrors?: boolean;
  /** @default false: a failed platform fails the whole index. */
  publishPartial?: boolean;
}

/**
 * The index PatchJob's name: stable for registry, repository and tag, so a new index
 * digest behind the same tag moves its generation instead of making a second one.
 */
export function patchJobNameForIndex(image: Pick<ImageSpec, "registryURI" | "repository" | "tag">): string {
  // Not the digest (a spec's image carries the platform's): repository and tag only.
  return patchJobNameForImage("index", {
    registryURI: image.registryURI,
    repository: image.repository,
    ...(image.tag ? { tag: image.tag } : {}),
    platform: "all",
  });
}

function created(m: PatchJob): string {
  const t = m.metadata.creationTimestamp;
  return t instanceof Date ? t.toISOString() : (t ?? "");
}

const INDEX_NAME_RE = /^index-[a-z0-9-]*-[0-9a-f]{16}$/;
export function looksLikeIndexName(name: string): boolean {
  return INDEX_NAME_RE.test(name);
}

/** A report's PatchJob that belongs to an index. */
export function isIndexMember(pj: Pick<PatchJob, "spec">): boolean {
  const img = pj.spec.image;
  return pj.spec.source === Source.Report && !!img?.indexDigest && img.platform !== "all";
}

/** A PatchJob that patches a whole index. */
export function isIndexPatchJob(pj: Pick<PatchJob, "spec">): boolean {
  return pj.spec.image?.platform === "all";
}

export interface IndexPlan {
  spec: PatchJobSpec & { image: ImageSpec; platforms: PlatformPatch[] };
  before: NonNullable<VulnerabilityCounts["before"]>;
  /** Members of another index digest behind the same tag (their reports are older or newer). */
  waiting: string[];
}

/**
 * The index PatchJob for a set of members. The index digest is the one most members
 * report (ties: the newest member's), since sbomscanner rescans platforms one by one
 * after a tag moves; members of another digest wait for their next scan. A member whose
 * report was deleted stays in (its plan is still true, and leaving it out would publish
 * that platform unpatched again); dry-run and invalid members are out. Undefined when
 * no member can be patched.
 */
export function indexPlan(members: PatchJob[], settings: GroupSettings = {}): IndexPlan | undefined {
  const usable = members.filter(
    (m) =>
      isIndexMember(m) &&
      !m.spec.dryRun &&
      !m.metadata.deletionTimestamp &&
      m.status?.phase !== Phase.Invalid,
  );
  if (usable.length === 0) return undefined;
  const votes = new Map<string, { n: number; newest: string }>();
  for (const m of usable) {
    const d = m.spec.image!.indexDigest!;
    const t = created(m);
    const v = votes.get(d) ?? { n: 0, newest: "" };
    votes.set(d, { n: v.n + 1, newest: t > v.newest ? t : v.newest });
  }
  const [indexDigest] = [...votes.entries()].sort(
    (a, b) => b[1].n - a[1].n || b[1].newest.localeCompare(a[1].newest) || a[0].localeCompare(b[0]),
  )[0]!;
  const chosen = usable
    .filter((m) => m.spec.image!.indexDigest === indexDigest)
    .sort((a, b) => a.spec.image!.platform.localeCompare(b.spec.image!.platform));
  // One PatchJob per platform: should two reports name the same platform, the newer wins.
  const byPlatform = new Map<string, PatchJob>();
  for (const m of chosen) {
    const prev = byPlatform.get(m.spec.image!.platform);
    if (!prev || created(m) > created(prev)) byPlatform.set(m.spec.image!.platform, m);
  }
  const first = chosen[0]!;
  const img = first.spec.image!;
  const platforms: PlatformPatch[] = [...byPlatform.values()].map((m) => ({
    platform: m.spec.image!.platform,
    digest: m.spec.image!.digest!,
    patchJob: m.metadata.name,
    generation: m.metadata.generation ?? 1,
    ...(m.spec.findingsHash ? { findingsHash: m.spec.findingsHash } : {}),
    updates: m.spec.updates ?? [],
  }));
  const hash = createHash("sha256");
  for (const p of platforms) hash.update(`${p.platform} ${p.digest} ${p.findingsHash ?? ""}\n`);
  const before = { total: 0, fixable: 0 };
  for (const m of byPlatform.values()) {
    before.total += m.status?.vulnerabilities?.before?.total ?? 0;
    before.fixable += m.status?.vulnerabilities?.before?.fixable ?? 0;
  }
  return {
    spec: {
      image: {
        registryURI: img.registryURI,
        repository: img.repository,
        ...(img.tag ? { tag: img.tag } : {}),
        digest: indexDigest,
        indexDigest,
        platform: "all",
      },
      source: Source.Report,
      ...(first.spec.policyRef ? { policyRef: first.spec.policyRef } : {}),
      ...(first.spec.os ? { os: first.spec.os } : {}),
      findingsHash: "sha256:" + hash.digest("hex"),
      platforms,
      // The members' target (their policy's), else the controller's suffix.
      target: first.spec.target ?? { tagSuffix: settings.tagSuffix ?? DEFAULT_TAG_SUFFIX },
      options: {
        ignoreErrors: settings.ignoreErrors ?? false,
        timeout: settings.timeout ?? DEFAULT_TIMEOUT,
        publishPartial: settings.publishPartial ?? false,
      },
    },
    before,
    waiting: usable.filter((m) => m.spec.image!.indexDigest !== indexDigest).map((m) => m.metadata.name),
  };
}

/**
 * What an index PatchJob's spec change means: nothing, or patch again and why. A
 * member's new generation alone (its policy changed, or it was made again) counts too:
 * that member waits Grouped for a result of its own generation, which only a new run
 * of the index gives it.
 */
export function indexChange(
  existing: Pick<PatchJob, "spec">,
  next: PatchJobSpec,
): "none" | "DigestChanged" | "FindingsChanged" | "PlatformsChanged" {
  if (existing.spec.image?.digest !== next.image?.digest) return "DigestChanged";
  if (existing.spec.findingsHash !== next.findingsHash) return "FindingsChanged";
  const members = (s: PatchJobSpec) =>
    JSON.stringify((s.platforms ?? []).map((p) => [p.patchJob, p.generation]));
  if (members(existing.spec) !== members(next)) return "PlatformsChanged";
  if (JSON.stringify(existing.spec.target ?? {}) !== JSON.stringify(next.target ?? {}))
    return "PlatformsChanged";
  return "none";
}

/** A member's status while its index PatchJob is queued or running. */
export function markGrouped(pj: PatchJob, group: string): PatchJobStatus {
  return {
    ...pj.status,
    phase: Phase.Queued,
    reason: Reason.Grouped,
    message: `patched with the other platforms of index ${pj.spec.image?.indexDigest ?? "?"} by PatchJob ${group}`,
    observedGeneration: pj.metadata.generation ?? 1,
    group,
    startTime: undefined,
    completionTime: undefined,
  };
}
