import { test } from "node:test";
import assert from "node:assert/strict";
import { markCancelled, markNoOp, markQueued, markRunning, statusForGeneration } from "./status.ts";
import { Phase, Reason, type PatchJob } from "./patchjob.ts";

function pj(generation: number, status?: PatchJob["status"]): PatchJob {
  return {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "PatchJob",
    metadata: { name: "p", namespace: "default", generation },
    spec: {
      source: "manual",
      image: { registryURI: "r.example", repository: "a/b", platform: "linux/amd64" },
    },
    ...(status ? { status } : {}),
  };
}

test("patchjob - attempts count per generation: a retry of the same generation keeps them, a new generation starts from none", () => {
  const ran = { ...pj(1), status: markRunning(markQueuedPJ(pj(1)), "w1") };
  assert.equal(ran.status.attempts, 1);
  const again = { ...ran, status: markRunning({ ...ran, status: markQueued(ran) }, "w2") };
  assert.equal(again.status.attempts, 2, "the same generation, queued again: the count goes on");
  const next = pj(2, again.status);
  const queued = markQueued(next);
  assert.equal(queued.attempts, undefined, "a new generation starts again");
  assert.equal(markRunning({ ...next, status: queued }, "w1").attempts, 1);
  // Whatever status is written first for the new generation (a cancellation, say).
  assert.equal(markCancelled(pj(2, again.status), Reason.ReportDeleted, "gone").attempts, undefined);
  assert.equal(statusForGeneration(pj(2, again.status)).patchedImage, undefined);
  assert.equal(markRunning(pj(2, again.status), "w1").attempts, 1, "never counts on from the old generation");
});

test("patchjob - markNoOp: NothingToUpdate by default, AlreadyPatched when asked, with the image that holds the patch", () => {
  const p = pj(1);
  assert.equal(markNoOp(p, "nothing").reason, Reason.NothingToUpdate);
  const s = markNoOp(
    p,
    "already",
    { patchedImage: { reference: "r.example/a/b:1-patched", digest: "sha256:" + "a".repeat(64) } },
    new Date(),
    Reason.AlreadyPatched,
  );
  assert.equal(s.phase, Phase.NoOp);
  assert.equal(s.reason, Reason.AlreadyPatched);
  assert.equal(s.patchedImage?.reference, "r.example/a/b:1-patched");
});

function markQueuedPJ(p: PatchJob): PatchJob {
  return { ...p, status: markQueued(p) };
}
