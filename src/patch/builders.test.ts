// The choice of BuildKit replica: pure, so tested with plain values; the real thing (two
// buildkitds, one stopped mid-run) is test/scale/buildkits.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PatchError, Reason } from "../api/index.ts";
import { builderKey, builderOrder, onBuilders, parseBuilderAddrs } from "./builders.ts";

const A = "tcp://buildkit-0:1234";
const B = "tcp://buildkit-1:1234";
const C = "tcp://buildkit-2:1234";
const repos = Array.from({ length: 300 }, (_, i) => `registry.example/team/app-${i}`);

test("builderOrder: the same repository always ranks the replicas the same way, every replica once", () => {
  for (const key of repos.slice(0, 20)) {
    const o = builderOrder([A, B, C], key);
    assert.deepEqual([...o].sort(), [A, B, C].sort());
    assert.deepEqual(builderOrder([C, A, B], key), o, "independent of the list's order");
  }
});

test("builderOrder: repositories spread over the replicas", () => {
  const first = new Map<string, number>();
  for (const key of repos) {
    const a = builderOrder([A, B, C], key)[0]!;
    first.set(a, (first.get(a) ?? 0) + 1);
  }
  for (const addr of [A, B, C]) assert.ok((first.get(addr) ?? 0) > 50, `${addr}: ${first.get(addr)} of 300`);
});

test("builderOrder: losing a replica moves only the repositories that were on it, to their second choice", () => {
  for (const key of repos) {
    const all = builderOrder([A, B, C], key);
    const without = builderOrder([A, B], key);
    if (all[0] !== C) assert.equal(without[0], all[0], key);
    else assert.equal(without[0], all[1], key);
  }
});

test("builderKey: tags and digests of one repository pick the same replica", () => {
  const k1 = builderKey({ registry: "r.example", repository: "team/app", tag: "1.0" });
  const k2 = builderKey({
    registry: "r.example",
    repository: "team/app",
    digest: `sha256:${"a".repeat(64)}`,
  });
  assert.equal(k1, k2);
  assert.notEqual(k1, builderKey({ registry: "r.example", repository: "team/other", tag: "1.0" }));
});

test("onBuilders: fails over on BuildKitUnreachable only, in the hash's order, and says where it ran", async () => {
  const key = repos[0]!;
  const order = builderOrder([A, B, C], key);
  const tried: string[] = [];
  const r = await onBuilders([A, B, C], key, async (addr) => {
    tried.push(addr);
    if (addr === order[0]) throw new PatchError(Reason.BuildKitUnreachable, "connection refused");
    return "patched";
  });
  assert.deepEqual(tried, order.slice(0, 2));
  assert.deepEqual(r, { result: "patched", builder: { addr: order[1], skipped: [order[0]] } });

  const other: string[] = [];
  await assert.rejects(
    onBuilders([A, B, C], key, async (addr) => {
      other.push(addr);
      throw new PatchError(Reason.CopaFailed, "copa failed");
    }),
    (e: unknown) => e instanceof PatchError && e.reason === Reason.CopaFailed,
  );
  assert.equal(other.length, 1, "a copa failure is the attempt's own: not retried elsewhere");

  const all: string[] = [];
  await assert.rejects(
    onBuilders([A, B, C], key, async (addr) => {
      all.push(addr);
      throw new PatchError(Reason.BuildKitUnreachable, `${addr} down`);
    }),
    (e: unknown) => e instanceof PatchError && e.message === `${order[2]} down`,
  );
  assert.deepEqual(all, order, "every replica once, the last one's error reported");
});

test("onBuilders: a stopping worker does not move its patch to another replica", async () => {
  const ac = new AbortController();
  const tried: string[] = [];
  await assert.rejects(
    onBuilders(
      [A, B],
      repos[1]!,
      async (addr) => {
        tried.push(addr);
        ac.abort();
        throw new PatchError(Reason.BuildKitUnreachable, "cancelled");
      },
      { signal: ac.signal },
    ),
  );
  assert.equal(tried.length, 1);
});

test("parseBuilderAddrs: one address or a comma-separated list", () => {
  assert.deepEqual(parseBuilderAddrs(A), [A]);
  assert.deepEqual(parseBuilderAddrs(` ${A}, ${B},`), [A, B]);
});
