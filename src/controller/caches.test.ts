import { test } from "node:test";
import assert from "node:assert/strict";
import { slimPatchJob } from "./caches.ts";

test("cache - PatchJobs are kept without managedFields", () => {
  const pj = slimPatchJob({
    metadata: { name: "a", namespace: "n", managedFields: [{ manager: "x" }] },
    spec: { source: "manual" },
  } as any);
  assert.equal((pj.metadata as any).managedFields, undefined);
  assert.equal(pj.metadata.name, "a");
});
