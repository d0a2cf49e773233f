// A patch's result, recorded: the PatchJob's terminal status, Events, and for an index
// the status of each platform's PatchJob (the platforms first, the index last: a worker
// that dies between the two leaves the index unfinished, so the redelivery records the
// platforms again, adopting the push).
import {
  markFailed,
  markNoOp,
  markPlanned,
  markSucceeded,
  type PackageUpdate,
  type PatchJob,
  type PatchJobStatus,
  PlatformResult,
  Reason,
} from "../api/index.ts";
import type { EventRecorder, PatchJobClient } from "../kube/index.ts";
import type { PatchImageResult, PatchIndexResult } from "../patch/index.ts";

import type { Logger } from "../util/index.ts";
import { counts, findingsOf } from "./counts.ts";
import { librariesAfter } from "../patch/index.ts";
import { finish, finishMembers } from "./status-writer.ts";

export type Outcome = "succeeded" | "noop" | "failed";

export interface RecordDeps {
  client: PatchJobClient;
  events: EventRecorder;
}

export type RunResult = (
  | PatchImageResult
  | { kind: "planned"; message: string; updates: PackageUpdate[] }
  | { kind: "index"; result: PatchIndexResult }
) & {
  /** The BuildKit that ran it (none for a dry run). */
  builder?: string;
};

export async function record(d: RecordDeps, pj: PatchJob, r: RunResult, log: Logger): Promise<Outcome> {
  switch (r.kind) {
    case "index":
      return recordIndex(d, pj, r.result, log);
    case "noop":
      await finish(d.client, pj, (p) => ({
        ...markNoOp(p, r.message, { vulnerabilities: counts(p, 0) }),
        ...(r.libraries ? { libraries: librariesAfter(p.status?.libraries, r.libraries) } : {}),
      }));
      d.events.normal(pj, "NoOp", r.message);
      log.info(r.message);
      return "noop";
    case "planned":
      await finish(d.client, pj, (p) => ({ ...markPlanned(p, r.message), plannedUpdates: r.updates }));
      return "succeeded";
    case "patched":
      return recordImage(d, pj, r, log);
  }
}

async function recordImage(
  d: RecordDeps,
  pj: PatchJob,
  r: Extract<PatchImageResult, { kind: "patched" }>,
  log: Logger,
): Promise<Outcome> {
  const fixed = findingsOf(r.verification.fixed);
  const image = { reference: r.patchedRef, digest: r.patchedDigest };
  const libraries = (p: PatchJob) =>
    r.libraries ? { libraries: librariesAfter(p.status?.libraries, r.libraries) } : {};
  if (r.adopted && (pj.status?.attempts ?? 1) <= 1) {
    // A first attempt that finds the target already holding this patch did nothing
    // itself: another PatchJob (or an earlier generation) made that image. A later
    // attempt adopting is this PatchJob's own push, whose worker died before recording
    // it: that one is Succeeded, below.
    const message = `${r.patchedRef}@${r.patchedDigest} already holds this patch (${r.verification.fixedCVEs.length} CVEs fixed): nothing to do`;
    await finish(d.client, pj, (p) => ({
      ...markNoOp(
        p,
        message,
        { patchedImage: image, vulnerabilities: counts(p, fixed), fixedCVEs: r.verification.fixedCVEs },
        new Date(),
        Reason.AlreadyPatched,
      ),
      ...libraries(p),
    }));
    d.events.normal(pj, "NoOp", message);
    log.info({ digest: r.patchedDigest }, message);
    return "noop";
  }
  const reason = r.adopted ? Reason.AlreadyPatched : Reason.Patched;
  const written = await finish(d.client, pj, (p) => ({
    ...markSucceeded(
      p,
      {
        patchedImage: image,
        vulnerabilities: counts(p, fixed),
        fixedCVEs: r.verification.fixedCVEs,
        ...(r.signature
          ? { signature: { digest: r.signature.digest, attestations: r.signature.attestations } }
          : {}),
      },
      reason,
    ),
    ...libraries(p),
  }));
  d.events.normal(
    pj,
    reason,
    `pushed ${r.patchedRef}@${r.patchedDigest}: ${r.verification.fixed.length} packages updated, ${r.verification.fixedCVEs.length} CVEs fixed`,
  );
  log.info(
    {
      digest: r.patchedDigest,
      adopted: r.adopted,
      fixed: r.verification.fixed.length,
      recorded: !!written,
      ...(r.copaMs !== undefined ? { copaMs: Math.round(r.copaMs) } : {}),
      ...(r.signature ? { signMs: Math.round(r.signature.ms), attestations: r.signature.attestations } : {}),
    },
    "patched",
  );
  return "succeeded";
}

/** One platform's result as the index PatchJob's status records it. */
function platformStatus(o: PatchIndexResult["platforms"][number]) {
  return {
    platform: o.platform,
    result: o.result,
    sourceDigest: o.sourceDigest,
    ...(o.digest ? { digest: o.digest } : {}),
    message: o.message.slice(0, 1024),
  };
}

type Maker = (m: PatchJob) => PatchJobStatus;

/** What each platform's PatchJob records when the index was published. */
function memberOfPublished(r: PatchIndexResult, platform: string): Maker | undefined {
  const o = r.platforms.find((x) => x.platform === platform);
  if (!o) return undefined;
  const index = { reference: r.patchedRef, digest: r.indexDigest! };
  const image = {
    ...index,
    shortDigest: index.digest.slice(0, 19),
    ...(o.digest ? { platformDigest: o.digest } : {}),
  };
  if (o.result === PlatformResult.Failed)
    return (m) =>
      markFailed(
        m,
        o.reason ?? Reason.CopaFailed,
        `${o.message}; the index was published with this platform's original manifest (publishPartial)`,
      );
  if (o.result === PlatformResult.UpToDate)
    return (m) => ({ ...markNoOp(m, o.message, { vulnerabilities: counts(m, 0) }), patchedImage: image });
  return (m) => ({
    ...markSucceeded(
      m,
      {
        patchedImage: index,
        vulnerabilities: counts(m, findingsOf(o.verification?.fixed ?? [])),
        fixedCVEs: o.verification?.fixedCVEs ?? [],
      },
      r.adopted ? Reason.AlreadyPatched : Reason.Patched,
    ),
    message: `${platform} patched as ${o.digest} in index ${r.patchedRef}@${r.indexDigest}`,
    patchedImage: image,
  });
}

/** What each platform's PatchJob records when nothing was published. */
function memberOfFailed(r: PatchIndexResult, platform: string): Maker | undefined {
  const o = r.platforms.find((x) => x.platform === platform);
  if (!o) return undefined;
  if (o.result === PlatformResult.Failed)
    return (m) => markFailed(m, o.reason ?? r.reason ?? Reason.CopaFailed, o.message);
  if (o.result === PlatformResult.NotPublished)
    return (m) => markFailed(m, Reason.IndexNotPublished, o.message);
  return (m) => markNoOp(m, o.message, { vulnerabilities: counts(m, 0) });
}

async function recordIndex(d: RecordDeps, pj: PatchJob, r: PatchIndexResult, log: Logger): Promise<Outcome> {
  const platforms = r.platforms.map(platformStatus);
  const warnFailed = (written: PatchJob[]) => {
    for (const w of written)
      if (w.status?.phase === "Failed")
        d.events.warning(w, w.status.reason ?? Reason.CopaFailed, w.status.message ?? "");
  };
  if (r.kind === "noop") {
    await finishMembers(d.client, pj, () => (m) => markNoOp(m, r.message, { vulnerabilities: counts(m, 0) }));
    await finish(d.client, pj, (p) => ({
      ...markNoOp(p, r.message, { vulnerabilities: counts(p, 0) }),
      platforms,
    }));
    d.events.normal(pj, "NoOp", r.message);
    return "noop";
  }
  if (r.kind === "failed") {
    const reason = r.reason ?? Reason.CopaFailed;
    warnFailed(await finishMembers(d.client, pj, (platform) => memberOfFailed(r, platform)));
    await finish(d.client, pj, (p) => ({ ...markFailed(p, reason, r.message), platforms }));
    d.events.warning(pj, reason, r.message);
    log.error({ reason, platforms: platforms.map((p) => `${p.platform}=${p.result}`) }, "index patch failed");
    return "failed";
  }
  const fixed = r.platforms.reduce((n, o) => n + findingsOf(o.verification?.fixed ?? []), 0);
  const cves = r.platforms.flatMap((o) => o.verification?.fixedCVEs ?? []);
  const partial = r.platforms.some((o) => o.result === PlatformResult.Failed);
  warnFailed(await finishMembers(d.client, pj, (platform) => memberOfPublished(r, platform)));
  await finish(d.client, pj, (p) => ({
    ...markSucceeded(
      p,
      {
        patchedImage: { reference: r.patchedRef, digest: r.indexDigest! },
        vulnerabilities: counts(p, fixed),
        fixedCVEs: cves,
        ...(r.signature
          ? { signature: { digest: r.signature.digest, attestations: r.signature.attestations } }
          : {}),
      },
      r.adopted ? Reason.AlreadyPatched : Reason.Patched,
    ),
    ...(partial ? { message: r.message.slice(0, 4096) } : {}),
    platforms,
  }));
  const summary = r.platforms.map((o) => `${o.platform} ${o.result}`).join(", ");
  if (partial) d.events.warning(pj, "PartiallyPatched", r.message);
  else
    d.events.normal(
      pj,
      r.adopted ? Reason.AlreadyPatched : Reason.Patched,
      `pushed index ${r.patchedRef}@${r.indexDigest}: ${summary}`,
    );
  log.info({ digest: r.indexDigest, adopted: r.adopted, platforms: summary }, "index patched");
  return "succeeded";
}
