// maxInFlight when reconciles of several keys run at once: the gate reserves the slot it
// opens, so a second PatchJob asking before the first one's publish shows in the cache
// is held. (Found under load: two of three PatchJobs Queued with maxInFlight 1.)
import { test } from "node:test";
import assert from "node:assert/strict";
import type { PatchJob, PatchPolicy } from "../api/index.ts";
import { PolicySet } from "./policy-set.ts";

const policy = {
  apiVersion: "vulnpatcher.io/v1alpha1",
  kind: "PatchPolicy",
  metadata: { name: "limited", namespace: "team", generation: 1 },
  spec: { mode: "Auto", limits: { maxInFlight: 1 } },
} as unknown as PatchPolicy;
const store = <T>(items: T[]) => ({ get: () => undefined, values: () => items, size: items.length });
const pj = (name: string): PatchJob =>
  ({
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "PatchJob",
    metadata: { name, namespace: "team", generation: 1 },
    spec: { source: "report", policyRef: { name: "limited", namespace: "team" } },
    status: { phase: "Pending", observedGeneration: 1 },
  }) as unknown as PatchJob;

test("policy-set: with maxInFlight 1, the first to pass the gate holds the slot for the others (no cache update in between)", () => {
  let now = Date.parse("2026-11-30T12:00:00Z");
  const set = new PolicySet(store([policy]), "vuln-patcher", () => new Date(now));
  const none = store<PatchJob>([]);
  assert.equal(set.gate(pj("a"), none), undefined, "a may go");
  assert.equal(set.gate(pj("b"), none)?.reason, "PolicyLimit", "b waits: a holds the slot");
  assert.equal(set.gate(pj("a"), none), undefined, "a itself is not held by its own reservation");
  // A reservation that was never used (no publish, nothing in the cache) lapses.
  now += 11_000;
  assert.equal(set.gate(pj("b"), none), undefined, "after 10 s b may go");
});
