// The rollout decision (issue 21), pure: a plan once per generation; under Auto one step
// per pass (one workload write or one status write), health from the workload's own
// counters, a rollback when it does not become ready, and the rest stopped.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { PatchJob } from "../api/index.ts";
import type { Action } from "./actions.ts";
import { decideRollout, health, type RolloutSpec } from "./rollout.ts";
import { ROLLED_BACK, ROLLOUT_RECORD, type WorkloadFacts, type WorkloadWrite } from "./workloads.ts";

const D = `sha256:${"a".repeat(64)}`;
const P = `sha256:${"b".repeat(64)}`;
const FROM = "registry.example/team/web:1.0";
const TO = `registry.example/team/web:1.0-patched@${P}`;
const T0 = new Date("2026-12-01T10:00:00Z");
const at = (s: number) => new Date(T0.getTime() + s * 1000);

const pj = (over: Partial<NonNullable<PatchJob["status"]>> = {}): PatchJob =>
  ({
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "PatchJob",
    metadata: { name: "web", namespace: "team", generation: 2, uid: "uid-1" },
    spec: {
      source: "report",
      image: {
        registryURI: "registry.example",
        repository: "team/web",
        tag: "1.0",
        digest: D,
        platform: "linux/amd64",
      },
    },
    status: {
      phase: "Succeeded",
      observedGeneration: 2,
      patchedImage: { reference: "registry.example/team/web:1.0-patched", digest: P },
      ...over,
    },
  }) as unknown as PatchJob;

const w = (over: Partial<WorkloadFacts> & Pick<WorkloadFacts, "name">): WorkloadFacts => ({
  kind: "Deployment",
  namespace: "team",
  containers: [{ name: "app", image: FROM }],
  ...over,
});

const progress = (o: Partial<NonNullable<WorkloadFacts["progress"]>> = {}) => ({
  generation: 3,
  observedGeneration: 3,
  desired: 2,
  updated: 2,
  ready: 2,
  available: 2,
  total: 2,
  ...o,
});

/** Apply an action to the PatchJob and the workloads as the apiserver would. */
function applyTo(
  p: PatchJob,
  ws: WorkloadFacts[],
  a: Action | undefined,
): { p: PatchJob; ws: WorkloadFacts[] } {
  if (a?.kind === "status") return { p: { ...p, status: a.status }, ws };
  if (a?.kind !== "workload") return { p, ws };
  return { p, ws: ws.map((x) => (x.name === a.write.name ? written(x, a.write) : x)) };
}

function written(x: WorkloadFacts, wr: WorkloadWrite): WorkloadFacts {
  const annotations = { ...x.annotations };
  for (const [k, v] of Object.entries(wr.annotations)) {
    if (v === null) delete annotations[k];
    else annotations[k] = v;
  }
  const containers = x.containers.map((c) => {
    const change = wr.containers.find((y) => y.name === c.name);
    assert.ok(!change || change.expect === c.image, "the write expects the image the workload has");
    return change ? { ...c, image: change.image } : c;
  });
  return { ...x, annotations, containers };
}

const AUTO: RolloutSpec = { mode: "Auto" };

test("rollout: Off by default; workloads not read, not Succeeded, a platform of an index: nothing", () => {
  const ws = [w({ name: "web" })];
  const now = T0;
  assert.equal(decideRollout({ pj: pj(), rollout: undefined, workloads: ws, now }), undefined);
  assert.equal(decideRollout({ pj: pj(), rollout: AUTO, workloads: undefined, now }), undefined);
  assert.equal(decideRollout({ pj: pj({ phase: "Queued" }), rollout: AUTO, workloads: ws, now }), undefined);
  assert.equal(
    decideRollout({ pj: pj({ group: "web-index" }), rollout: AUTO, workloads: ws, now }),
    undefined,
  );
});

test("rollout: DryRun records the plan with the image by digest, once per generation; nothing is written to a workload", () => {
  const ws = [w({ name: "web" }), w({ name: "no", annotations: { "vulnpatcher.io/rollout": "false" } })];
  const a = decideRollout({ pj: pj(), rollout: { mode: "DryRun" }, workloads: ws, now: T0 });
  assert.ok(a?.kind === "status");
  assert.deepEqual(
    a.status.rollout?.workloads.map((x) => [x.name, x.state, x.reason, x.to]),
    [
      ["no", "Skipped", "OptedOut", undefined],
      ["web", "Planned", undefined, TO],
    ],
  );
  assert.match(a.event!.message, /1 workload containers would get .*@sha256:b{64}, 1 left alone/);
  assert.equal(
    decideRollout({
      pj: { ...pj(), status: a.status },
      rollout: { mode: "DryRun" },
      workloads: ws,
      now: at(5),
    }),
    undefined,
    "level-triggered",
  );
});

test("rollout: Auto, one workload at a time: write, Updating, Updated once its replicas are ready, then the next", () => {
  let p = pj();
  let ws = [w({ name: "d" }), w({ name: "c", kind: "CronJob" })];
  const seen: string[] = [];
  for (let s = 0; s < 12; s++) {
    // The workload's controller finishes its rollout a few passes after our write.
    ws = ws.map((x) => (x.annotations?.[ROLLOUT_RECORD] && s > 7 ? { ...x, progress: progress() } : x));
    const a = decideRollout({ pj: p, rollout: AUTO, workloads: ws, now: at(s) });
    if (!a) break;
    seen.push(
      a.kind === "workload"
        ? `write ${a.write.name}`
        : a.kind === "status"
          ? `status ${p.status!.rollout ? a.status.rollout!.workloads.map((x) => `${x.name}:${x.state}`).join(",") : "plan"}`
          : a.kind,
    );
    ({ p, ws } = applyTo(p, ws, a));
  }
  assert.deepEqual(seen, [
    "status plan",
    "write c",
    "status c:Updating,d:Planned",
    "status c:Updated,d:Planned",
    "write d",
    "status c:Updated,d:Updating",
    "requeue",
    "requeue",
    "status c:Updated,d:Updated",
  ]);
  assert.equal(p.status!.rollout!.updated, 2);
  assert.deepEqual(
    ws.map((x) => x.containers[0]!.image),
    [TO, TO],
  );
  const record = JSON.parse(ws[0]!.annotations![ROLLOUT_RECORD]!);
  assert.deepEqual(record.containers, { app: { from: FROM, to: TO } }, "the previous image, to undo it");
  const d = p.status!.rollout!.workloads.find((x) => x.name === "d")!;
  assert.equal(d.startedAt, at(4).toISOString(), "from the record written with the image");
  assert.equal(d.finishedAt, at(8).toISOString());
});

test("rollout: a Deployment past its progress deadline is put back, RolledBack with the Pod's reason; the rest stops; a later PatchJob skips it", () => {
  let p = pj();
  let ws = [w({ name: "a" }), w({ name: "b" })];
  const unready = [{ pod: "a-new-1", images: [TO], why: "Readiness probe failed: old version expected" }];
  const out: Action[] = [];
  for (let s = 0; s < 12; s++) {
    ws = ws.map((x) => {
      if (x.name !== "a") return x;
      if (x.annotations?.[ROLLED_BACK])
        return { ...x, progress: progress({ generation: 4, observedGeneration: 4 }) };
      if (x.annotations?.[ROLLOUT_RECORD])
        return {
          ...x,
          unready,
          progress: progress({
            updated: 1,
            ready: 2,
            total: 3,
            deadlineExceeded: s > 3 ? "ReplicaSet a-new has timed out progressing." : undefined,
          }),
        };
      return x;
    });
    const a = decideRollout({ pj: p, rollout: AUTO, workloads: ws, now: at(s) });
    if (!a) break;
    out.push(a);
    ({ p, ws } = applyTo(p, ws, a));
  }
  const back = out.find((a) => a.kind === "workload" && a.write.containers[0]!.image === FROM);
  assert.ok(back?.kind === "workload", "the previous image written back");
  assert.deepEqual(back.write.containers, [{ name: "app", expect: TO, image: FROM }]);
  assert.equal(back.write.annotations[ROLLOUT_RECORD], null);
  const items = p.status!.rollout!.workloads;
  assert.deepEqual(
    items.map((x) => [x.name, x.state, x.reason]),
    [
      ["a", "RolledBack", "ProgressDeadlineExceeded"],
      ["b", "Skipped", "RolloutStopped"],
    ],
  );
  assert.match(items[0]!.message!, /a-new-1: Readiness probe failed/);
  assert.equal(ws[1]!.containers[0]!.image, FROM, "the other workload untouched");
  const warned = out.find((a) => a.kind === "status" && a.event?.reason === "RolloutRolledBack");
  assert.ok(warned, "a Warning Event when rolled back");
  // A later PatchJob (another uid, generation) of the same image: the rolled-back workload is skipped.
  const later = { ...pj(), metadata: { ...pj().metadata, uid: "uid-2", name: "web-2" } } as PatchJob;
  const plan = decideRollout({ pj: later, rollout: AUTO, workloads: ws, now: at(30) });
  assert.ok(plan?.kind === "status");
  assert.deepEqual(
    plan.status.rollout!.workloads.map((x) => [x.name, x.state, x.reason]),
    [
      ["a", "Skipped", "RolledBackBefore"],
      ["b", "Planned", undefined],
    ],
  );
});

test("rollout: health - counters, deadline, timeout; a CronJob is done once its template says so", () => {
  const d = w({ name: "a" });
  assert.equal(health({ ...d, kind: "CronJob" }, [TO], undefined, 1000, T0).kind, "ready");
  assert.equal(health({ ...d, progress: progress() }, [TO], T0.toISOString(), 1000, T0).kind, "ready");
  assert.equal(
    health({ ...d, progress: progress({ observedGeneration: 2 }) }, [TO], T0.toISOString(), 60_000, at(1))
      .kind,
    "waiting",
    "the workload's controller has not seen the change yet",
  );
  assert.equal(
    health({ ...d, progress: progress({ total: 3 }) }, [TO], T0.toISOString(), 60_000, at(1)).kind,
    "waiting",
    "an old Pod left",
  );
  // A deadline exceeded before the change (the workload's old trouble) is not this change failing.
  assert.equal(
    health(
      {
        ...d,
        progress: progress({ ready: 1, deadlineExceeded: "old", deadlineExceededAt: at(-60).toISOString() }),
      },
      [TO],
      T0.toISOString(),
      60_000,
      at(1),
    ).kind,
    "waiting",
  );
  assert.equal(
    health(
      {
        ...d,
        progress: progress({ ready: 1, deadlineExceeded: "new", deadlineExceededAt: at(20).toISOString() }),
      },
      [TO],
      T0.toISOString(),
      60_000,
      at(21),
    ).kind,
    "failed",
  );
  const late = health({ ...d, progress: progress({ ready: 1 }) }, [TO], T0.toISOString(), 60_000, at(60));
  assert.deepEqual(late, {
    kind: "failed",
    reason: "NotReadyInTime",
    message: "not ready after 60 s (1/2 ready)",
  });
});

test("rollout: limits - the window holds new starts; minSeverity; a workload changed by someone else is skipped", () => {
  const ws = [w({ name: "a" })];
  const windowed: RolloutSpec = { mode: "Auto", window: { start: "22:00", end: "23:00" } };
  const planned = decideRollout({ pj: pj(), rollout: windowed, workloads: ws, now: T0 });
  assert.ok(planned?.kind === "status");
  const wait = decideRollout({
    pj: { ...pj(), status: planned.status },
    rollout: windowed,
    workloads: ws,
    now: T0,
  });
  assert.ok(wait?.kind === "requeue" && wait.reason === "OutsideWindow");
  assert.equal(wait.afterMs, 12 * 3600_000, "until 22:00 UTC");

  const low = decideRollout({
    pj: pj(),
    rollout: { mode: "Auto", minSeverity: "CRITICAL" },
    workloads: ws,
    fixedSeverity: "HIGH",
    now: T0,
  });
  assert.ok(low?.kind === "status");
  assert.equal(low.status.rollout!.workloads[0]!.reason, "BelowMinSeverity");

  const moved = [w({ name: "a", containers: [{ name: "app", image: "registry.example/team/web:2.0" }] })];
  const skip = decideRollout({
    pj: { ...pj(), status: planned.status },
    rollout: AUTO,
    workloads: moved,
    now: T0,
  });
  assert.ok(skip?.kind === "status");
  assert.equal(skip.status.rollout!.workloads[0]!.reason, "ChangedMeanwhile");
});
