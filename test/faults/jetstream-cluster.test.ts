// Fault suite on a three-node JetStream cluster (three real nats-servers on loopback, the
// stream at replicas 3), the real apiserver and the controller: the node leading the
// stream is killed (SIGKILL, as a crash) in the middle of a burst of 1,000 report
// updates, and started again. Nothing consumes the stream, so what it holds is exactly
// what the controller published.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { setup, type Env } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { reportFault } from "../support/faults.ts";
import { idle } from "../support/controller.ts";
import { allQueuedAtLast, burstWithFault, queuedOnce } from "../support/burst.ts";
import { connectNats, STREAM } from "../../src/queue/index.ts";
import { type RunningController, startController } from "../../src/controller/index.ts";

let env: Env;
let nc: NatsConnection;
let ctl: RunningController;

before(async () => {
  env = await setup({ registry: false, controllerManager: false, natsCluster: 3 });
  await installAllCRDs(env.kubeConfig());
  nc = await connectNats({ url: env.natsURL, name: "faults-jetstream-cluster" });
  ctl = await startController({
    kc: env.kubeConfig(),
    nc,
    streamReplicas: 3,
    resyncMs: 30_000,
    sweepIntervalMs: 2_000,
    staleQueuedMs: 30_000,
  });
});

after(async () => {
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

/** The stream's leader and replicas as the cluster reports them (undefined while it has no leader). */
async function streamCluster(): Promise<{ leader: string; replicas: number; current: number } | undefined> {
  const jsm = await jetstreamManager(nc, { timeout: 2000 });
  const info = await jsm.streams.info(STREAM).catch(() => undefined);
  const c = info?.cluster;
  if (!info || !c?.leader) return undefined;
  return {
    leader: c.leader,
    replicas: info.config.num_replicas,
    current: (c.replicas ?? []).filter((r) => r.current).length,
  };
}

test("faults - the JetStream stream leader killed (SIGKILL) during a burst of 1,000 report updates on a three-node cluster: every PatchJob Queued at its last generation exactly once, 0 lost, 0 duplicates", async (t) => {
  const ns = "fault-js-leader";
  const kc = env.kubeConfig();
  const nodes = env.nats!.nodes!;
  assert.equal(nodes.length, 3);
  const REPORTS = 100;
  const ROUNDS = 10;
  let killed = "";
  let killedIdx = -1;
  let after: { leader: string; replicas: number; current: number } | undefined;
  const b = await burstWithFault(kc, ns, {
    reports: REPORTS,
    rounds: ROUNDS,
    fault: async () => {
      const before = await waitFor("the stream to have a leader", streamCluster, 30_000, 100);
      assert.equal(before.replicas, 3, "the controller made the stream with 3 replicas");
      killed = before.leader;
      killedIdx = nodes.findIndex((n) => n.component.name === `nats-${killed}`);
      assert.ok(killedIdx >= 0, `the leader ${killed} is one of the environment's nodes`);
      await nodes[killedIdx]!.component.kill();
      after = await waitFor(
        "another node to lead the stream",
        async () => {
          const c = await streamCluster();
          return c && c.leader !== killed ? c : undefined;
        },
        30_000,
        100,
      );
    },
    undo: async () => void (await nodes[killedIdx]!.component.start()),
  });
  const pjs = await allQueuedAtLast(kc, ns, REPORTS, ROUNDS);
  await idle(ctl);
  // The killed node is back and has caught up: all three replicas current.
  await waitFor(
    "all three replicas current",
    async () => ((await streamCluster())?.current ?? 0) >= 2 || undefined,
    60_000,
    200,
  );
  const q = await queuedOnce(env.natsURL, ns, pjs);
  assert.deepEqual(q.dupes, [], "no (PatchJob, generation) published twice");
  assert.deepEqual(q.lost, [], "every PatchJob's last generation is on the stream");
  reportFault(t, {
    fault: "jetstream-leader-killed-during-burst",
    injected: `stream leader ${killed} killed (SIGKILL) after update ${b.faultAt} of ${b.total} (new leader ${after?.leader}), started again after update ${b.undoneAt}`,
    expected: `${REPORTS} PatchJobs Queued at their last generation; each last generation on the stream once; no duplicates`,
    observed: `${pjs.length} Queued at their last generation (${q.generations} generations in all); ${q.messages} messages, ${q.dupes.length} duplicates, ${q.lost.length} last generations missing`,
  });
});
