// Reconcile one report key (namespace/name): read the report's facts and its PatchJob
// from the caches, decide, apply, publish.
// Level-triggered and idempotent: running it twice in a row changes nothing the second time.
import type { KubeConfig } from "@kubernetes/client-node";
import {
  ConditionType,
  Phase,
  decideFacts,
  getCondition,
  markPublishFailed,
  markQueued,
  markInvalid,
  patchJobNameForReport,
  markSourceGone,
  Reason,
  Source,
  type Decision,
  type DecideSettings,
  type GroupSettings,
  type PatchJob,
  INDEX_GROUP_LABEL,
  INDEX_LABEL,
  indexChange,
  indexPlan,
  isIndexMember,
  isIndexPatchJob,
  looksLikeIndexName,
  markGrouped,
  markPlanned,
  describePlan,
  patchJobNameForIndex,
  isStagingTag,
} from "../api/index.ts";
import type { PolicySet } from "./policies.ts";
import { done, requeueAfter, type Result } from "../kube/controller.ts";
import { isConflict } from "../kube/errors.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Store } from "../kube/informer.ts";
import type { PatchJobClient } from "../kube/patchjobs.ts";
import type { Publisher } from "../queue/publisher.ts";
import type { Logger } from "../util/log.ts";
import { errorMessage } from "../util/errors.ts";
import type { ReportSummary } from "./summary.ts";

export interface ReconcilerDeps {
  kc: KubeConfig;
  reports: Store<ReportSummary>;
  /** False while the first list of reports is still arriving. */
  reportsSynced?: () => boolean;
  patchJobs: Store<PatchJob>;
  client: PatchJobClient;
  publisher: Publisher;
  events: EventRecorder;
  settings: DecideSettings &
    GroupSettings & {
      /** Patch the platforms of a multi-arch index together, as one index. @default true */
      groupIndexes?: boolean;
      /** Wait this long after an index's newest platform PatchJob before patching it. @default 10_000 */
      indexSettleMs?: number;
    };
  /** PatchPolicies: which reports are patched, how and when. */
  policies?: PolicySet;
  /** True for an image reference (registry/repository:tag) some PatchJob pushed: our own output. */
  isOwnOutput?: (ref: string) => boolean;
  /** Queue another key (an index PatchJob's, when one of its platforms changed). */
  enqueue?: (key: string) => void;
  /** Called on publish failures (metrics). */
  onPublishFailure?: () => void;
  onPublished?: (duplicate: boolean) => void;
}

export function reportReconciler(deps: ReconcilerDeps) {
  /** Publish the PatchJob's current generation and record Queued (or why not) in one status write. */
  async function publish(
    pj: PatchJob,
    log: Logger,
    event?: { reason: string; message: string },
  ): Promise<Result> {
    const generation = pj.metadata.generation ?? 1;
    const gate = deps.policies?.gate(pj, deps.patchJobs);
    if (gate) {
      // Not yet (the policy's maxInFlight, or outside its window): say so once, look again later.
      if (pj.status?.reason !== gate.reason || pj.status.observedGeneration !== generation) {
        await deps.client
          .updateStatus(pj, {
            ...pj.status,
            phase: Phase.Pending,
            reason: gate.reason,
            message: gate.message,
            observedGeneration: generation,
          })
          .catch((err: unknown) => {
            if (!isConflict(err)) throw err;
          });
        log.info({ reason: gate.reason }, gate.message);
      }
      return requeueAfter(gate.retryMs);
    }
    try {
      const r = await deps.publisher.publish({
        namespace: pj.metadata.namespace!,
        name: pj.metadata.name,
        uid: pj.metadata.uid!,
        generation,
      });
      deps.onPublished?.(r.duplicate);
      log.info({ generation, seq: r.seq, duplicate: r.duplicate }, "patch request published");
    } catch (err) {
      deps.onPublishFailure?.();
      const message = errorMessage(err);
      log.warn({ err: message }, "could not publish the patch request; will retry");
      const wasFailing = getCondition(pj, ConditionType.Queued)?.reason === "PublishFailed";
      await deps.client.updateStatus(pj, markPublishFailed(pj, message)).catch((e: unknown) => {
        if (!isConflict(e)) throw e;
      });
      if (!wasFailing) deps.events.warning(pj, "PublishFailed", `could not queue the patch: ${message}`);
      // The work queue's rate limiter spaces the retries.
      throw new Error(`publish failed: ${message}`, { cause: err });
    }
    try {
      await deps.client.updateStatus(pj, markQueued(pj));
      if (event) deps.events.normal(pj, event.reason, event.message);
    } catch (err) {
      // A worker may already have claimed it (Running): its status wins; the next pass sees it.
      if (!isConflict(err)) throw err;
    }
    return done;
  }

  /** True when this generation still needs a message: nothing recorded for it yet, or recorded as unpublished. */
  function needsPublish(pj: PatchJob): boolean {
    const s = pj.status;
    const gen = pj.metadata.generation ?? 1;
    if (!s?.phase || (s.observedGeneration ?? 0) < gen) return true;
    return s.phase === Phase.Pending;
  }

  /**
   * A report that cannot become a patch gets a PatchJob in phase Invalid that says why,
   * so `kubectl get pj` shows it; its spec names only the report (no image, nothing runs).
   * A PatchJob that already patched an earlier, valid version of the report keeps its
   * spec and status (history), and gets a Warning event instead.
   */
  async function recordInvalid(
    namespace: string,
    name: string,
    existing: PatchJob | undefined,
    summary: ReportSummary,
    message: string,
    log: Logger,
  ): Promise<Result> {
    if (existing?.spec.source === Source.Report && existing.spec.image) {
      if (existing.spec.reportRef?.resourceVersion !== summary.resourceVersion) {
        log.warn({ reason: Reason.InvalidReport }, message);
        deps.events.warning(existing, Reason.InvalidReport, `the latest report is not used: ${message}`);
      }
      return done;
    }
    if (existing && existing.status?.phase === Phase.Invalid && existing.status.message === message)
      return done;
    let pj = existing;
    if (!pj) {
      try {
        pj = await deps.client.create({
          metadata: {
            name,
            namespace,
            labels: { "app.kubernetes.io/managed-by": "vuln-patcher", "vulnpatcher.io/source": "report" },
          },
          spec: {
            source: Source.Report,
            reportRef: {
              namespace,
              name,
              ...(summary.uid ? { uid: summary.uid } : {}),
              ...(summary.resourceVersion ? { resourceVersion: summary.resourceVersion } : {}),
            },
          },
        });
      } catch (err) {
        if (isConflict(err)) return requeueAfter(200);
        throw err;
      }
    }
    try {
      await deps.client.updateStatus(pj, markInvalid(pj, Reason.InvalidReport, message));
    } catch (err) {
      if (isConflict(err)) return requeueAfter(200);
      throw err;
    }
    log.info({ reason: Reason.InvalidReport }, message);
    deps.events.warning(pj, Reason.InvalidReport, message);
    return done;
  }

  const grouping = deps.settings.groupIndexes ?? true;
  const groupOf = (pj: PatchJob) =>
    grouping && isIndexMember(pj) && !pj.spec.dryRun ? patchJobNameForIndex(pj.spec.image!) : undefined;

  /** A DryRun policy's PatchJob: Planned from the report's own plan, no message, nothing runs. */
  async function recordPlanned(pj: PatchJob, log: Logger): Promise<Result> {
    const updates = pj.spec.updates ?? [];
    const message = `dry run (policy ${pj.spec.policyRef?.name ?? "?"}): ${describePlan(updates)}`;
    try {
      await deps.client.updateStatus(pj, { ...markPlanned(pj, message), plannedUpdates: updates });
    } catch (err) {
      if (isConflict(err)) return requeueAfter(200);
      throw err;
    }
    log.info({ updates: updates.length }, "dry run planned");
    return done;
  }

  /** Publish, hand to the index, or plan: what a report's PatchJob needs now. */
  function advance(pj: PatchJob, log: Logger, event?: { reason: string; message: string }): Promise<Result> {
    if (pj.spec.dryRun && pj.spec.source === Source.Report) return recordPlanned(pj, log);
    const group = groupOf(pj);
    if (group) {
      if (event) deps.events.normal(pj, event.reason, event.message);
      return groupMember(pj, group, log);
    }
    return publish(pj, log, event);
  }

  /** A platform's PatchJob is not queued itself: it waits for its index PatchJob, which is. */
  async function groupMember(pj: PatchJob, group: string, log: Logger): Promise<Result> {
    try {
      await deps.client.updateStatus(pj, markGrouped(pj, group));
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
    log.info({ group, generation: pj.metadata.generation }, "platform handed to its index PatchJob");
    deps.enqueue?.(`${pj.metadata.namespace}/${group}`);
    return done;
  }

  /**
   * One index PatchJob from its members (the live list: a member written a moment ago
   * counts). Runs under the index's own key, so the work queue never runs two at once.
   */
  async function reconcileIndex(namespace: string, name: string, log: Logger): Promise<Result> {
    const members = await deps.client.list(namespace, `${INDEX_GROUP_LABEL}=${name}`);
    const plan = indexPlan(members, deps.settings);
    if (!plan) return done;
    // sbomscanner writes the reports of an index's platforms one after another: let them
    // settle, so the index is patched once with every platform instead of once per report.
    const settle = deps.settings.indexSettleMs ?? 10_000;
    const newest = Math.max(
      ...members.map((m) => {
        const t = m.metadata.creationTimestamp;
        return t ? new Date(t as string | Date).getTime() : 0;
      }),
    );
    const wait = newest + settle - Date.now();
    if (wait > 0) return requeueAfter(Math.min(wait + 100, settle + 100));
    if (plan.waiting.length)
      log.info({ waiting: plan.waiting }, "platforms of another index digest wait for their next scan");
    const existing = await deps.client.get(namespace, name);
    if (!existing) {
      let pj: PatchJob;
      try {
        pj = await deps.client.create({
          metadata: {
            name,
            namespace,
            labels: {
              "app.kubernetes.io/managed-by": "vuln-patcher",
              "vulnpatcher.io/source": "report",
              [INDEX_LABEL]: "true",
            },
          },
          spec: plan.spec,
        });
      } catch (err) {
        if (isConflict(err)) return requeueAfter(200);
        throw err;
      }
      log.info({ platforms: plan.spec.platforms.map((p) => p.platform) }, "index PatchJob created");
      return publish({ ...pj, status: { vulnerabilities: { before: plan.before } } }, log);
    }
    if (existing.spec.source !== Source.Report) return done;
    const why = indexChange(existing, plan.spec);
    if (why === "none") {
      if (needsPublish(existing))
        return publish(
          { ...existing, status: { ...existing.status, vulnerabilities: { before: plan.before } } },
          log,
        );
      // A member's counts arrived after the index was queued (its status is written after
      // it is created): keep the sum true.
      const before = existing.status?.vulnerabilities?.before;
      if (before?.total !== plan.before.total || before?.fixable !== plan.before.fixable)
        await deps.client
          .updateStatus(existing, {
            ...existing.status,
            vulnerabilities: { ...existing.status?.vulnerabilities, before: plan.before },
          })
          .catch((err: unknown) => {
            if (!isConflict(err)) throw err;
          });
      return done;
    }
    let pj: PatchJob;
    try {
      pj = await deps.client.updateSpec(existing, plan.spec);
    } catch (err) {
      if (isConflict(err)) return requeueAfter(200);
      throw err;
    }
    log.info({ why, generation: pj.metadata.generation }, "index PatchJob spec updated");
    return publish(
      {
        ...pj,
        status: {
          ...pj.status,
          vulnerabilities: { before: plan.before },
          patchedImage: undefined,
          platforms: undefined,
          fixedCVEs: undefined,
          fixedCVEsTruncated: undefined,
        },
      },
      log,
      {
        reason: why,
        message: `patch the index again (generation ${pj.metadata.generation}): ${
          {
            DigestChanged: "the index digest changed",
            FindingsChanged: "a platform's fixable findings changed",
            PlatformsChanged: "a platform's PatchJob or the target changed",
          }[why]
        }`,
      },
    );
  }

  return async function reconcile(key: string, _signal: AbortSignal, log: Logger): Promise<Result> {
    const [namespace, name] = key.split("/") as [string, string];
    const summary = deps.reports.get(key);
    const existing = deps.patchJobs.get(key);

    if (
      existing
        ? isIndexPatchJob(existing) && existing.spec.source === Source.Report
        : !summary && looksLikeIndexName(name)
    )
      return reconcileIndex(namespace, name, log);

    // A PatchJob made by hand (kubectl, the API) or by a policy: the controller only queues it.
    if (existing && existing.spec.source !== Source.Report) {
      return needsPublish(existing)
        ? publish(existing, log, {
            reason: "Queued",
            message: `${existing.spec.source} patch request queued`,
          })
        : done;
    }

    if (!summary) {
      // Not listed yet is not the same as gone: look again once the list is complete.
      if (deps.reportsSynced && !deps.reportsSynced()) return requeueAfter(2_000);
      // The report is gone: keep its PatchJob as history, and say so once.
      if (
        existing &&
        existing.spec.source === Source.Report &&
        getCondition(existing, ConditionType.SourceAvailable)?.status !== "False"
      ) {
        const fresh = await deps.client.get(namespace, name);
        if (!fresh) return done;
        await deps.client.updateStatus(fresh, markSourceGone(fresh));
        deps.events.warning(
          fresh,
          "ReportDeleted",
          "the VulnerabilityReport was deleted; this PatchJob stays as history",
        );
      }
      return done;
    }
    if (summary.deleting) return done;
    // A scan of an image we pushed (whatever its tag: a policy's suffix or template): never
    // patch our own output again.
    const im = summary.facts?.imageMetadata;
    if (
      im?.tag &&
      (isStagingTag(im.tag) || deps.isOwnOutput?.(`${im.registryURI}/${im.repository}:${im.tag}`))
    ) {
      log.debug({ tag: im.tag }, "a scan of an image vuln-patcher pushed; skipped");
      return done;
    }
    let settings = deps.settings;
    if (summary.facts && deps.policies) {
      const v = deps.policies.verdict(key, summary.facts);
      if (v.kind !== "patch") {
        // No policy, a Disabled one, or a Scheduled one between runs: nothing new happens;
        // a PatchJob that exists stays as it is. Except one a scheduled run already
        // decided and that still waits to be published (held by maxInFlight or the window,
        // or a publish that failed): the run's decision stands until it is queued.
        if (
          v.kind === "waiting" &&
          existing?.spec.source === Source.Report &&
          existing.spec.policyRef?.name === v.policy.name &&
          (existing.spec.policyRef.namespace ?? v.policy.namespace) === v.policy.namespace &&
          needsPublish(existing)
        )
          return advance(existing, log);
        log.debug(
          { policy: v.kind === "none" ? undefined : v.policy.name, verdict: v.kind },
          "no patch decision for this report now",
        );
        return done;
      }
      settings = { ...deps.settings, policy: v.settings };
    }
    const d: Decision = summary.facts
      ? decideFacts(summary.facts, existing, settings)
      : {
          action: "invalid",
          name,
          reason: "InvalidReport",
          message: `the report cannot be read: ${summary.invalid?.message ?? "unknown problem"} (${summary.invalid?.reason ?? "?"})`,
        };
    switch (d.action) {
      case "invalid":
        return recordInvalid(namespace, patchJobNameForReport(name), existing, summary, d.message, log);
      case "skip":
        log.debug({ reason: d.reason }, d.message);
        return done;
      case "leave": {
        if (!existing || existing.spec.source !== Source.Report || !needsPublish(existing)) return done;
        return advance(existing, log);
      }
      case "create": {
        let pj: PatchJob;
        try {
          const group = grouping && d.spec.image.indexDigest ? patchJobNameForIndex(d.spec.image) : undefined;
          pj = await deps.client.create({
            metadata: {
              name: d.name,
              namespace,
              labels: {
                "app.kubernetes.io/managed-by": "vuln-patcher",
                "vulnpatcher.io/source": "report",
                ...(group ? { [INDEX_GROUP_LABEL]: group } : {}),
              },
            },
            spec: d.spec,
          });
        } catch (err) {
          // Another controller (or our own earlier pass) created it: level-triggered, look again.
          if (isConflict(err)) return requeueAfter(200);
          throw err;
        }
        log.info({ generation: pj.metadata.generation, updates: d.spec.updates?.length }, "PatchJob created");
        pj = { ...pj, status: { vulnerabilities: { before: d.before } } };
        // No Event here: the PatchJob's phase and message say it, and an Event per new
        // report is one more apiserver write per report (at 10,000 reports, a third of
        // the controller's writes). Events are for what changes a human's picture:
        // re-patches, failures, invalid reports, results.
        return advance(pj, log);
      }
      case "update": {
        let pj: PatchJob | undefined;
        // The cached copy is often one status write behind (ours, or a worker's): on a
        // conflict, write the spec onto a fresh read once before backing off. Only the
        // controller writes the spec of a report's PatchJob, so the decision still holds.
        for (let attempt = 0; attempt < 2 && !pj; attempt++) {
          const base = attempt === 0 ? existing! : await deps.client.get(namespace, name);
          if (!base) return done;
          try {
            pj = await deps.client.updateSpec(base, d.spec);
          } catch (err) {
            if (!isConflict(err)) throw err;
          }
        }
        if (!pj) return requeueAfter(200);
        log.info({ why: d.why, generation: pj.metadata.generation }, "PatchJob spec updated");
        pj = {
          ...pj,
          status: {
            ...pj.status,
            vulnerabilities: { before: d.before },
            patchedImage: undefined,
            fixedCVEs: undefined,
            fixedCVEsTruncated: undefined,
            plannedUpdates: undefined,
          },
        };
        const why = {
          DigestChanged: "the image digest changed",
          FindingsChanged: "the fixable findings changed",
          PolicyChanged: "its policy changed",
        }[d.why];
        return advance(pj, log, {
          reason: d.why,
          message: `${pj.spec.dryRun ? "plan" : "patch"} again (generation ${pj.metadata.generation}): ${why}`,
        });
      }
    }
  };
}
