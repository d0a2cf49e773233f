import { test } from "node:test";
import assert from "node:assert/strict";
import type { KubeConfig } from "@kubernetes/client-node";
import { DEFAULT_CONCURRENCY, DEFAULT_RESYNC_MS } from "../kube/index.ts";
import type { Publisher } from "../queue/index.ts";
import { DEFAULT_POLICY_NAMESPACE, OptionsError, parseControllerOptions } from "./manager.ts";

const kc = {} as KubeConfig;
const publisher: Publisher = {
  publish: async () => ({ seq: 1, duplicate: false }),
  pending: async () => false,
};

test("controller options - the defaults, filled in; the schema loaded once", () => {
  const o = parseControllerOptions({ kc, publisher });
  assert.equal(o.concurrency, DEFAULT_CONCURRENCY);
  assert.equal(o.resyncMs, DEFAULT_RESYNC_MS);
  assert.equal(o.policyNamespace, DEFAULT_POLICY_NAMESPACE);
  assert.deepEqual(o.namespaces, []);
  assert.equal(o.schema.type, "object");
  assert.ok(o.schema.properties?.image, "the PatchJob spec schema, from the chart's CRD");
});

test("controller options - a bad value is an error that names the property", () => {
  const rows: Array<[Parameters<typeof parseControllerOptions>[0], RegExp]> = [
    [{ kc }, /nc \(or publisher\) is required/],
    [{ kc, publisher, concurrency: 0 }, /concurrency must be >= 1, got 0/],
    [{ kc, publisher, resyncMs: 10 }, /resyncMs must be >= 1000/],
    [{ kc, publisher, reconcileTimeoutMs: Number.NaN }, /reconcileTimeoutMs/],
    [
      { kc, publisher, leaderElection: { enabled: true, namespace: "x", leaseDurationMs: 1000 } },
      /leaderElection\.leaseDurationMs must be >= 3000/,
    ],
  ];
  for (const [o, re] of rows)
    assert.throws(
      () => parseControllerOptions(o),
      (e: unknown) => e instanceof OptionsError && e.code === "INVALID_OPTION" && re.test(e.message),
      String(re),
    );
});
