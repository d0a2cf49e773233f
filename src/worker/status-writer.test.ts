import { test } from "node:test";
import assert from "node:assert/strict";
import type { PatchJob } from "../api/index.ts";
import type { PatchJobClient } from "../kube/index.ts";
import { finish, StatusNotRecordedError } from "./status-writer.ts";

const pj: PatchJob = {
  apiVersion: "vulnpatcher.io/v1alpha1",
  kind: "PatchJob",
  metadata: { name: "p", namespace: "ns", uid: "u", generation: 2, resourceVersion: "1" },
  spec: { source: "manual" },
};

/** An apiserver (simulated) whose status writes always conflict; reads count too. */
function conflicting(fresh: PatchJob | undefined) {
  const calls = { writes: 0, reads: 0 };
  const client = {
    updateStatus: async () => {
      calls.writes++;
      throw Object.assign(new Error("conflict"), { code: 409 });
    },
    get: async () => (calls.reads++, fresh),
  } as unknown as PatchJobClient;
  return { client, calls };
}

test("status writer - a status that keeps conflicting is not recorded, and says so (the caller must not ack)", async () => {
  const { client, calls } = conflicting(pj);
  await assert.rejects(
    finish(client, pj, (p) => ({ ...p.status, phase: "Succeeded" })),
    StatusNotRecordedError,
  );
  assert.equal(calls.writes, 3, "three tries, each on a fresh read");
  assert.equal(calls.reads, 3);
});

test("status writer - a PatchJob that moved on (new generation, or gone) takes no result: undefined, one try", async () => {
  for (const fresh of [{ ...pj, metadata: { ...pj.metadata, generation: 3 } }, undefined]) {
    const { client, calls } = conflicting(fresh);
    assert.equal(await finish(client, pj, (p) => ({ ...p.status, phase: "Succeeded" })), undefined);
    assert.equal(calls.writes, 1);
  }
});
