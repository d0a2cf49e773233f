// One patch request, made true once with an honest result. The PatchJob is the truth:
// re-read it, drop what is stale or finished, claim it with the resourceVersion read
// (so two workers never both act), patch, verify, record, and only then ack.
import {
  Phase,
  Reason,
  isFinished,
  markFailed,
  markNoOp,
  markPlanned,
  markRunning,
  markSucceeded,
  sourceRef,
  targetRef,
  type PatchJob,
  type PatchJobStatus,
  type VulnerabilityCounts,
} from "../api/index.ts";
import { formatImageRef } from "../api/imageref.ts";
import { isConflict } from "../kube/errors.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { PatchJobClient } from "../kube/patchjobs.ts";
import type { Executor } from "../patch/executor.ts";
import { BadMessageError, decodeRequest } from "../queue/messages.ts";
import type { Delivery, HandlerResult } from "../queue/consumer.ts";
import type { RegistryClient } from "../registry/client.ts";
import { PatchError, errorMessage } from "../util/errors.ts";
import { silentLogger, type Logger } from "../util/log.ts";
import { patchImage, type PatchImageResult } from "./patch-image.ts";
import { patchIndex, type PatchIndexResult } from "./patch-index.ts";
import { PlatformResult, type PackageUpdate } from "../api/patchjob.ts";
import { describePlan } from "../api/policy.ts";
import { planUpdates } from "./plan.ts";
import { readPackageDB } from "../registry/pkgdb.ts";

export interface WorkerDeps {
  client: PatchJobClient;
  events: EventRecorder;
  executor: Executor;
  registry: RegistryClient;
  buildkitAddr: string;
  tls?: { caCert: string; cert: string; key: string };
  /** This worker's name (pod name), recorded in status.worker. */
  identity: string;
  /** Store copa's OpenVEX document with the PatchJob; returns the ConfigMap name. */
  saveVex?: (pj: PatchJob, vex: string) => Promise<string | undefined>;
  log?: Logger;
  onOutcome?: (outcome: "succeeded" | "noop" | "failed" | "retry" | "dropped", seconds: number) => void;
  onInFlight?: (delta: number) => void;
}

const ACK: HandlerResult = { kind: "ack" };

export function patchHandler(deps: WorkerDeps) {
  const baseLog = deps.log ?? silentLogger;

  async function writeStatus(pj: PatchJob, status: PatchJobStatus): Promise<PatchJob | undefined> {
    try {
      return await deps.client.updateStatus(pj, status);
    } catch (err) {
      if (isConflict(err)) return undefined;
      throw err;
    }
  }

  /** Record a terminal status for the generation we hold, re-reading once if someone wrote meanwhile. */
  async function finish(pj: PatchJob, make: (p: PatchJob) => PatchJobStatus): Promise<PatchJob | undefined> {
    for (let i = 0; i < 3; i++) {
      const written = await writeStatus(pj, make(pj));
      if (written) return written;
      const fresh = await deps.client.get(pj.metadata.namespace!, pj.metadata.name);
      if (
        !fresh ||
        fresh.metadata.uid !== pj.metadata.uid ||
        fresh.metadata.generation !== pj.metadata.generation
      )
        return undefined;
      pj = fresh;
    }
    return undefined;
  }

  /**
   * Write each platform's PatchJob (the members listed in the index PatchJob's spec),
   * for the generation the plan came from only: a member that moved on since belongs to
   * the index PatchJob's next generation.
   */
  async function recordMembers(
    index: PatchJob,
    log: Logger,
    make: (platform: string) => ((m: PatchJob) => PatchJobStatus) | undefined,
  ): Promise<void> {
    for (const p of index.spec.platforms ?? []) {
      if (!p.patchJob) continue;
      const status = make(p.platform);
      if (!status) continue;
      const member = await deps.client.get(index.metadata.namespace!, p.patchJob);
      if (!member || (member.metadata.generation ?? 1) !== (p.generation ?? 1)) continue;
      const written = await finish(member, (m) => ({ ...status(m), group: index.metadata.name }));
      if (written?.status?.phase === Phase.Failed)
        deps.events.warning(
          written,
          written.status.reason ?? Reason.CopaFailed,
          written.status.message ?? "",
        );
      log.debug({ member: p.patchJob, phase: written?.status?.phase }, "platform PatchJob recorded");
    }
  }

  async function recordIndex(
    pj: PatchJob,
    r: PatchIndexResult,
    log: Logger,
    outcome: (o: "succeeded" | "noop" | "failed") => void,
  ): Promise<HandlerResult> {
    const platforms = r.platforms.map(platformStatus);
    const byPlatform = new Map(r.platforms.map((o) => [o.platform, o]));
    const patchedImage = r.indexDigest ? { reference: r.patchedRef, digest: r.indexDigest } : undefined;
    if (r.kind === "noop") {
      // The platforms first, the index last: a worker that dies between the two leaves the
      // index unfinished, so the redelivery records the platforms again (adopting the push).
      await recordMembers(pj, log, () => (m) => markNoOp(m, r.message, { vulnerabilities: counts(m, 0) }));
      await finish(pj, (p) => ({ ...markNoOp(p, r.message, { vulnerabilities: counts(p, 0) }), platforms }));
      deps.events.normal(pj, "NoOp", r.message);
      outcome("noop");
      return ACK;
    }
    if (r.kind === "failed") {
      const reason = r.reason ?? Reason.CopaFailed;
      await recordMembers(pj, log, (platform) => {
        const o = byPlatform.get(platform);
        if (!o) return undefined;
        if (o.result === PlatformResult.Failed) return (m) => markFailed(m, o.reason ?? reason, o.message);
        if (o.result === PlatformResult.NotPublished)
          return (m) => markFailed(m, Reason.IndexNotPublished, o.message);
        return (m) => markNoOp(m, o.message, { vulnerabilities: counts(m, 0) });
      });
      await finish(pj, (p) => ({ ...markFailed(p, reason, r.message), platforms }));
      deps.events.warning(pj, reason, r.message);
      log.error(
        { reason, platforms: platforms.map((p) => `${p.platform}=${p.result}`) },
        "index patch failed",
      );
      outcome("failed");
      return ACK;
    }
    const fixed = r.platforms.reduce((n, o) => n + fixedFindingsOf(o), 0);
    const cves = r.platforms.flatMap((o) => o.verification?.fixedCVEs ?? []);
    const partial = r.platforms.some((o) => o.result === PlatformResult.Failed);
    await recordMembers(pj, log, (platform) => {
      const o = byPlatform.get(platform);
      if (!o) return undefined;
      if (o.result === PlatformResult.Failed)
        return (m) =>
          markFailed(
            m,
            o.reason ?? Reason.CopaFailed,
            `${o.message}; the index was published with this platform's original manifest (publishPartial)`,
          );
      if (o.result === PlatformResult.UpToDate)
        return (m) => ({
          ...markNoOp(m, o.message, { vulnerabilities: counts(m, 0) }),
          patchedImage: {
            ...patchedImage!,
            shortDigest: patchedImage!.digest.slice(0, 19),
            platformDigest: o.digest,
          },
        });
      return (m) => ({
        ...markSucceeded(
          m,
          {
            patchedImage: patchedImage!,
            vulnerabilities: counts(m, fixedFindingsOf(o)),
            fixedCVEs: o.verification?.fixedCVEs ?? [],
          },
          r.adopted ? Reason.AlreadyPatched : Reason.Patched,
        ),
        message: `${platform} patched as ${o.digest} in index ${r.patchedRef}@${r.indexDigest}`,
        patchedImage: {
          ...patchedImage!,
          shortDigest: patchedImage!.digest.slice(0, 19),
          ...(o.digest ? { platformDigest: o.digest } : {}),
        },
      });
    });
    await finish(pj, (p) => ({
      ...markSucceeded(
        p,
        { patchedImage: patchedImage!, vulnerabilities: counts(p, fixed), fixedCVEs: cves },
        r.adopted ? Reason.AlreadyPatched : Reason.Patched,
      ),
      ...(partial ? { message: r.message.slice(0, 4096) } : {}),
      platforms,
    }));
    const summary = r.platforms.map((o) => `${o.platform} ${o.result}`).join(", ");
    if (partial) deps.events.warning(pj, "PartiallyPatched", r.message);
    else
      deps.events.normal(
        pj,
        r.adopted ? Reason.AlreadyPatched : Reason.Patched,
        `pushed index ${r.patchedRef}@${r.indexDigest}: ${summary}`,
      );
    log.info({ digest: r.indexDigest, adopted: r.adopted, platforms: summary }, "index patched");
    outcome("succeeded");
    return ACK;
  }

  return async function handle(d: Delivery, _signal: AbortSignal): Promise<HandlerResult> {
    const started = performance.now();
    const outcome = (o: "succeeded" | "noop" | "failed" | "retry" | "dropped") =>
      deps.onOutcome?.(o, (performance.now() - started) / 1000);
    let req;
    try {
      req = decodeRequest(d.data);
    } catch (err) {
      if (err instanceof BadMessageError) {
        baseLog.error({ err: err.message }, "dropping a malformed patch request");
        outcome("dropped");
        return ACK;
      }
      throw err;
    }
    const log = baseLog.child({
      patchjob: `${req.namespace}/${req.name}`,
      generation: req.generation,
      delivery: d.deliveryCount,
    });
    let pj = await deps.client.get(req.namespace, req.name);
    if (!pj || pj.metadata.uid !== req.uid) {
      log.info("PatchJob gone or replaced; dropping the request");
      outcome("dropped");
      return ACK;
    }
    const gen = pj.metadata.generation ?? 1;
    if (req.generation < gen) {
      log.info({ current: gen }, "stale request (a newer generation is queued); dropping");
      outcome("dropped");
      return ACK;
    }
    if (isFinished(pj)) {
      log.info({ phase: pj.status?.phase }, "generation already finished; dropping");
      outcome("dropped");
      return ACK;
    }
    if (
      pj.status?.phase === Phase.Running &&
      pj.status.observedGeneration === gen &&
      pj.status.worker !== deps.identity &&
      d.deliveryCount === 1
    ) {
      // A second message for a generation another worker is patching (a re-publish): that
      // worker's own message comes back to us if it dies, so this one can go.
      log.info(
        { worker: pj.status.worker },
        "another worker is patching this generation; dropping the duplicate request",
      );
      outcome("dropped");
      return ACK;
    }

    const attempts = pj.status?.attempts ?? 0;
    const lastDiedRunning =
      pj.status?.phase === Phase.Running && pj.status.observedGeneration === gen && attempts >= d.maxDeliver;
    if (lastDiedRunning || d.deliveryCount > d.maxDeliver * 3) {
      // The last attempt never reported back (its worker died), or deliveries ran away: give up honestly.
      const last = pj.status?.message ?? "no result";
      await finish(pj, (p) =>
        markFailed(
          p,
          Reason.MaxAttemptsExceeded,
          `gave up after ${attempts} attempts; the last one did not finish (${last})`,
        ),
      );
      deps.events.warning(pj, Reason.MaxAttemptsExceeded, `patch failed after ${attempts} attempts`);
      outcome("failed");
      return ACK;
    }

    // Claim: a status write carrying the resourceVersion we read. On a conflict (the
    // controller recording Queued, say) read again and re-check before claiming.
    let claimed: PatchJob | undefined;
    for (let i = 0; i < 3 && !claimed; i++) {
      claimed = await writeStatus(pj, markRunning(pj, deps.identity));
      if (claimed) break;
      const fresh = await deps.client.get(req.namespace, req.name);
      if (
        !fresh ||
        fresh.metadata.uid !== req.uid ||
        (fresh.metadata.generation ?? 1) !== req.generation ||
        isFinished(fresh)
      ) {
        log.info("PatchJob changed while claiming; dropping this request");
        outcome("dropped");
        return ACK;
      }
      if (
        fresh.status?.phase === Phase.Running &&
        fresh.status.observedGeneration === req.generation &&
        fresh.status.worker !== deps.identity
      ) {
        // Someone else holds it; if they die, JetStream redelivers to us later.
        outcome("retry");
        return { kind: "retry" };
      }
      pj = fresh;
    }
    if (!claimed) {
      outcome("retry");
      return { kind: "retry", delayMs: 1000 };
    }
    pj = claimed;
    deps.onInFlight?.(1);
    try {
      const result = await run(pj, d, log);
      if (result.kind === "index") return await recordIndex(pj, result.result, log, outcome);
      if (result.kind === "noop") {
        await finish(pj, (p) => markNoOp(p, result.message, { vulnerabilities: counts(p, 0) }));
        deps.events.normal(pj, "NoOp", result.message);
        log.info(result.message);
        outcome("noop");
        return ACK;
      }
      if (result.kind === "planned") {
        await finish(pj, (p) => ({ ...markPlanned(p, result.message), plannedUpdates: result.updates }));
        outcome("succeeded");
        return ACK;
      }
      const fixedFindings = result.verification.fixed.reduce(
        (n, u) => n + Math.max(1, u.vulnerabilityIDs?.length ?? 0),
        0,
      );
      if (result.adopted && (pj.status?.attempts ?? 1) <= 1) {
        // A first attempt that finds the target already holding this patch did nothing
        // itself: another PatchJob (or an earlier generation) made that image. A later
        // attempt adopting is this PatchJob's own push, whose worker died before recording
        // it: that one is Succeeded, below.
        const message = `${result.patchedRef}@${result.patchedDigest} already holds this patch (${result.verification.fixedCVEs.length} CVEs fixed): nothing to do`;
        await finish(pj, (p) =>
          markNoOp(
            p,
            message,
            {
              patchedImage: { reference: result.patchedRef, digest: result.patchedDigest },
              vulnerabilities: counts(p, fixedFindings),
              fixedCVEs: result.verification.fixedCVEs,
            },
            new Date(),
            Reason.AlreadyPatched,
          ),
        );
        deps.events.normal(pj, "NoOp", message);
        log.info({ digest: result.patchedDigest }, message);
        outcome("noop");
        return ACK;
      }
      const vexConfigMap =
        result.vex && deps.saveVex
          ? await deps
              .saveVex(pj, result.vex)
              .catch(
                (err: unknown) => (
                  log.warn({ err: errorMessage(err) }, "could not store the VEX document"),
                  undefined
                ),
              )
          : undefined;
      const written = await finish(pj, (p) =>
        markSucceeded(
          p,
          {
            patchedImage: { reference: result.patchedRef, digest: result.patchedDigest },
            vulnerabilities: counts(p, fixedFindings),
            fixedCVEs: result.verification.fixedCVEs,
            vexConfigMap,
          },
          result.adopted ? Reason.AlreadyPatched : Reason.Patched,
        ),
      );
      deps.events.normal(
        pj,
        result.adopted ? Reason.AlreadyPatched : Reason.Patched,
        `pushed ${result.patchedRef}@${result.patchedDigest}: ${result.verification.fixed.length} packages updated, ${result.verification.fixedCVEs.length} CVEs fixed`,
      );
      log.info(
        {
          digest: result.patchedDigest,
          adopted: result.adopted,
          fixed: result.verification.fixed.length,
          recorded: !!written,
        },
        "patched",
      );
      outcome("succeeded");
      return ACK;
    } catch (err) {
      const pe =
        err instanceof PatchError
          ? err
          : new PatchError(Reason.Internal, errorMessage(err), { transient: true, cause: err });
      const last = (pj.status?.attempts ?? 1) >= d.maxDeliver;
      if (pe.transient && !last) {
        // Back to Queued while the message waits for its next delivery: never "Running" with nobody on it.
        const msg = `attempt ${pj.status?.attempts ?? 1} of ${d.maxDeliver} failed (${pe.reason}): ${pe.message}; retrying`;
        await finish(pj, (p) => ({
          ...p.status,
          phase: Phase.Queued,
          reason: pe.reason,
          message: msg,
          observedGeneration: p.metadata.generation ?? 1,
        }));
        log.warn({ reason: pe.reason, err: pe.message }, "transient failure; will retry");
        outcome("retry");
        return { kind: "retry" };
      }
      const msg =
        last && pe.transient
          ? `failed after ${pj.status?.attempts ?? 1} attempts: ${pe.message}`
          : pe.message;
      const finalReason = last && pe.transient ? Reason.MaxAttemptsExceeded : pe.reason;
      if (pj.spec.platforms?.length)
        await recordMembers(
          pj,
          log,
          () => (m) => markFailed(m, finalReason, `the index patch failed: ${msg}`),
        );
      await finish(pj, (p) => markFailed(p, finalReason, msg));
      deps.events.warning(pj, pe.reason, msg);
      log.error({ reason: pe.reason, err: pe.message }, "patch failed");
      outcome("failed");
      return ACK;
    } finally {
      deps.onInFlight?.(-1);
    }
  };

  async function run(
    pj: PatchJob,
    d: Delivery,
    log: Logger,
  ): Promise<
    | PatchImageResult
    | { kind: "planned"; message: string; updates: PackageUpdate[] }
    | { kind: "index"; result: PatchIndexResult }
  > {
    const spec = pj.spec;
    if (!spec.image) throw new PatchError(Reason.InvalidSpec, "spec.image is missing: nothing to patch");
    const image = spec.image;
    const source = sourceRef({ image });
    let target;
    try {
      target = targetRef({ image, target: spec.target });
    } catch (err) {
      throw new PatchError(Reason.InvalidSpec, errorMessage(err));
    }
    if (image.platform === "all") {
      if (spec.dryRun)
        throw new PatchError(
          Reason.InvalidSpec,
          "a dry run of a whole index is not supported: plan one platform",
        );
      const result = await patchIndex({
        id: `${pj.metadata.name}-${pj.metadata.generation ?? 1}`,
        source,
        target,
        // No platform list (a PatchJob made by hand for a whole index): every platform, update-all.
        platforms: spec.platforms?.map((p) => ({ platform: p.platform, updates: p.updates ?? [] })),
        os: spec.os,
        buildkitAddr: deps.buildkitAddr,
        tls: deps.tls,
        timeout: spec.options?.timeout,
        ignoreErrors: spec.options?.ignoreErrors,
        publishPartial: spec.options?.publishPartial,
        executor: deps.executor,
        registry: deps.registry,
        onProgress: (stage, message) => {
          d.working();
          log.info({ stage }, message);
        },
        onOutput: () => d.working(),
        namespace: pj.metadata.namespace,
        owner: { apiVersion: pj.apiVersion, kind: pj.kind, name: pj.metadata.name, uid: pj.metadata.uid! },
      });
      return { kind: "index", result };
    }
    if (spec.dryRun) {
      const src = await deps.registry.manifestFor(source, image.platform);
      if (!src)
        throw new PatchError(Reason.ImageNotFound, `source image ${formatImageRef(source)} not found`);
      const db = await readPackageDB(deps.registry, source, src.manifest.layers);
      const plan = planUpdates(spec.updates ?? [], db, spec.os?.type);
      return {
        kind: "planned",
        message: `dry run: ${describePlan(plan.needed)}; ${plan.satisfied.length} already in the image`,
        updates: plan.needed,
      };
    }
    const updates = spec.updates?.length ? spec.updates : undefined;
    return patchImage({
      id: `${pj.metadata.name}-${pj.metadata.generation ?? 1}`,
      source,
      platform: image.platform,
      target,
      updates,
      os: spec.os,
      buildkitAddr: deps.buildkitAddr,
      tls: deps.tls,
      timeout: spec.options?.timeout,
      ignoreErrors: spec.options?.ignoreErrors,
      executor: deps.executor,
      registry: deps.registry,
      onProgress: (stage, message) => {
        d.working();
        log.info({ stage }, message);
      },
      onOutput: () => d.working(),
      namespace: pj.metadata.namespace,
      owner: { apiVersion: pj.apiVersion, kind: pj.kind, name: pj.metadata.name, uid: pj.metadata.uid! },
    });
  }
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

function fixedFindingsOf(o: PatchIndexResult["platforms"][number]): number {
  return (o.verification?.fixed ?? []).reduce((n, u) => n + Math.max(1, u.vulnerabilityIDs?.length ?? 0), 0);
}

/** Before/after counts: before from the controller's status (or the spec), after from what was fixed. */
export function counts(pj: PatchJob, fixed: number): VulnerabilityCounts {
  const specFixable = (pj.spec.updates ?? []).reduce(
    (n, u) => n + Math.max(1, u.vulnerabilityIDs?.length ?? 0),
    0,
  );
  const before = {
    total: pj.status?.vulnerabilities?.before?.total ?? specFixable,
    fixable: pj.status?.vulnerabilities?.before?.fixable ?? specFixable,
  };
  const f = Math.min(fixed, before.fixable);
  return {
    before,
    after: {
      total: Math.max(0, (before.total ?? 0) - f),
      fixable: Math.max(0, (before.fixable ?? 0) - f),
      fixed: f,
    },
  };
}
