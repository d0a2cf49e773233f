// A burst of report updates with a fault injected in the middle, and the check that
// follows it: every PatchJob Queued at its last generation, each last generation on the
// stream exactly once. Shared by the NATS-restart and JetStream-leader fault tests.
import assert from "node:assert/strict";
import type { KubeConfig } from "@kubernetes/client-node";
import { waitFor } from "../../src/devenv/wait.ts";
import { createNamespace, listPatchJobs, reportsApi } from "../../src/devenv/kube.ts";
import type { PatchJob } from "../../src/api/index.ts";
import { makeReport } from "../fixtures/make-report.ts";
import { streamMessages } from "./stream.ts";

/** Run `n` tasks, `width` at a time. */
export async function pool(n: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

export interface BurstResult {
  total: number;
  /** The update count when the fault began and when it was undone. */
  faultAt: number;
  undoneAt: number;
}

/**
 * `reports` reports, then `rounds` rounds of updates to each (every round changes a fix,
 * so each is a new generation of its PatchJob). `fault` runs once 30% of the updates are
 * in and `undo` once 70% are; every update must be accepted by the apiserver.
 */
export async function burstWithFault(
  kc: KubeConfig,
  ns: string,
  o: { reports: number; rounds: number; fault: () => Promise<void>; undo: () => Promise<void> },
): Promise<BurstResult> {
  await createNamespace(kc, ns);
  const api = reportsApi(kc);
  await pool(o.reports, 8, async (i) => {
    await api.create(makeReport({ name: `r${i}`, namespace: ns, tag: `t${i}` }));
  });
  const total = o.reports * o.rounds;
  let done = 0;
  const r: BurstResult = { total, faultAt: -1, undoneAt: -1 };
  const failures: string[] = [];
  const chaos = (async () => {
    await waitFor(`${total * 0.3} updates`, async () => done >= total * 0.3 || undefined, 120_000, 50);
    r.faultAt = done;
    await o.fault();
    await waitFor(`${total * 0.7} updates`, async () => done >= total * 0.7 || undefined, 120_000, 50);
    r.undoneAt = done;
    await o.undo();
  })();
  await pool(total, 8, async (k) => {
    const i = k % o.reports;
    const round = Math.floor(k / o.reports) + 1;
    try {
      await api.jsonPatch(ns, `r${i}`, [
        {
          op: "replace",
          path: "/report/results/0/vulnerabilities/0/fixedVersions",
          value: [lastFix(round)],
        },
      ]);
    } catch (err) {
      failures.push(`r${i} round ${round}: ${(err as Error).message}`);
    }
    done++;
  });
  await chaos;
  assert.deepEqual(failures, [], "every update was accepted by the apiserver");
  return r;
}

function lastFix(round: number): string {
  return `5.4.1-1+deb12u${2 + round}`;
}

/** Every PatchJob Queued at its last generation with the last round's fix. */
export async function allQueuedAtLast(
  kc: KubeConfig,
  ns: string,
  reports: number,
  rounds: number,
): Promise<PatchJob[]> {
  return waitFor(
    `${reports} PatchJobs Queued at the last generation with the last fix`,
    async () => {
      const list = await listPatchJobs(kc, ns);
      return list.length === reports &&
        list.every(
          (p) =>
            p.status?.phase === "Queued" &&
            p.status.observedGeneration === p.metadata.generation &&
            p.spec.updates?.find((u) => u.name === "liblzma5")?.fixedVersion === lastFix(rounds),
        )
        ? list
        : undefined;
    },
    180_000,
    1000,
  );
}

/** What the stream holds for these PatchJobs: duplicates and missing last generations (both should be empty). */
export async function queuedOnce(
  natsURL: string,
  ns: string,
  pjs: PatchJob[],
): Promise<{ messages: number; dupes: string[]; lost: string[]; generations: number }> {
  const msgs = await streamMessages(natsURL, ns);
  const ids = msgs.map((m) => `${m.uid}/${m.generation}`);
  const dupes = ids.filter((id, i) => ids.indexOf(id) !== i);
  const lost = pjs
    .filter((p) => !ids.includes(`${p.metadata.uid}/${p.metadata.generation}`))
    .map((p) => p.metadata.name);
  const generations = pjs.reduce((a, p) => a + (p.metadata.generation ?? 1), 0);
  return { messages: msgs.length, dupes, lost, generations };
}
