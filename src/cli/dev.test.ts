// `vuln-patcher dev up --json`, then kubectl with the printed kubeconfig, then `dev down`
// leaves no process behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { goBinary, isAlive, REPO_ROOT } from "../../test/env/index.ts";
import { hostState } from "../../test/env/node.ts";

const run = promisify(execFile);
const cli = ["--import", "tsx", join(REPO_ROOT, "src", "cli", "main.ts")];

test("dev - up --json, kubectl get ns, status, down: no process left", async () => {
  const name = `test-${process.pid}`;
  const up = await run(process.execPath, [...cli, "dev", "up", "--json", "--name", name], {
    cwd: REPO_ROOT,
    timeout: 300_000,
  });
  const state = JSON.parse(up.stdout) as {
    kubeconfig: string;
    natsURL: string;
    registry: string;
    pids: Record<string, number>;
  };
  const pids = Object.values(state.pids);
  try {
    assert.ok(pids.length >= 5, `pids: ${JSON.stringify(state.pids)}`);
    assert.ok(pids.every(isAlive), "the processes outlive `dev up`");
    assert.match(state.natsURL, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.match(state.registry, /^127\.0\.0\.1:\d+$/);
    const ns = await run(goBinary("kubectl"), ["--kubeconfig", state.kubeconfig, "get", "ns"]);
    assert.match(ns.stdout, /default\s+Active/);
    const status = await run(process.execPath, [...cli, "dev", "status", "--name", name]);
    assert.match(status.stdout, /: up/);
    const again = await run(process.execPath, [...cli, "dev", "up", "--name", name]).then(
      () => 0,
      (e: { code: number; stderr: string }) => (assert.match(e.stderr, /already up/), e.code),
    );
    assert.equal(again, 2, "a second `dev up` refuses");
  } finally {
    await run(process.execPath, [...cli, "dev", "down", "--name", name], { timeout: 120_000 });
  }
  assert.deepEqual(pids.filter(isAlive), [], "dev down stops every process");
  const status = await run(process.execPath, [...cli, "dev", "status", "--name", name]).catch(
    (e: { code: number }) => e,
  );
  assert.equal((status as { code?: number }).code, 1);
});

test("dev - up --node, down, up again; a node whose owner vanished is reclaimed by the next up; down undoes every host change", async () => {
  const before = await hostState("/nonexistent-vuln-patcher-env");
  const names = ["a", "b", "c"].map((n) => `test-node-${n}-${process.pid}`);
  const up = async (name: string) => {
    const out = await run(process.execPath, [...cli, "dev", "up", "--node", "--json", "--name", name], {
      cwd: REPO_ROOT,
      timeout: 300_000,
    });
    const state = JSON.parse(out.stdout) as {
      dir: string;
      kubeconfig: string;
      node: string;
      registry: string;
      pids: Record<string, number>;
    };
    assert.equal(state.node, "vp-node");
    assert.match(state.registry, /^10\.244\.0\.1:\d+$/, "Pods reach the registry on the node's bridge");
    const nodes = await run(goBinary("kubectl"), ["--kubeconfig", state.kubeconfig, "get", "nodes"]);
    assert.match(nodes.stdout, /vp-node\s+Ready/, name);
    return state;
  };
  const down = (name: string) =>
    run(process.execPath, [...cli, "dev", "down", "--name", name], { timeout: 180_000 });
  const assertClean = async (dir: string, what: string) => {
    const after = await hostState(dir);
    assert.deepEqual(after.processes, [], `${what}: no process`);
    assert.deepEqual(after.mounts, [], `${what}: no mount`);
    assert.equal(after.bridge, false, `${what}: no bridge`);
    assert.deepEqual(after.chains, before.chains, `${what}: no iptables chain of ours`);
    assert.deepEqual(after.cgroups, [], `${what}: no kubepods cgroup`);
    assert.equal(after.ipForward, before.ipForward, `${what}: ip_forward as it was`);
    assert.deepEqual(after.hostDirs, before.hostDirs, `${what}: no host directory left`);
  };
  try {
    const a = await up(names[0]!);
    await down(names[0]!);
    await assertClean(a.dir, "after down");
    // b is never brought down by its owner (as when a test process is SIGKILLed): c's up
    // must find b's node and reclaim it first.
    const b = await up(names[1]!);
    const c = await up(names[2]!);
    assert.deepEqual(Object.values(b.pids).filter(isAlive), [], "the stale node's processes were stopped");
    await down(names[2]!);
    await assertClean(c.dir, "after reclaim and down");
    await down(names[1]!);
    await assertClean(b.dir, "the stale environment's down changes nothing");
  } finally {
    for (const n of names) await down(n).catch(() => {});
  }
});
