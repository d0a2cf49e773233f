// `vuln-patcher dev up --json`, then kubectl with the printed kubeconfig, then `dev down`
// leaves no process behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { join } from "node:path";
import { cacheDir, goBinary, isAlive, REPO_ROOT } from "../../src/devenv/index.ts";
import { hostState } from "../../src/devenv/node.ts";

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

test("dev - up --foreground stays until SIGTERM, then takes the environment down", async () => {
  const name = `fg-${process.pid}`;
  const child = spawn(process.execPath, [...cli, "dev", "up", "--json", "--foreground", "--name", name], {
    cwd: REPO_ROOT,
    env: { ...process.env, VULN_PATCHER_DEV_BUILDKIT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const deadline = Date.now() + 300_000;
  while (!/until Ctrl-C/.test(err) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const pids = Object.values((JSON.parse(out) as { pids: Record<string, number> }).pids);
  assert.ok(pids.length >= 4 && pids.every(isAlive), "up, and in the foreground");
  const t0 = Date.now();
  child.kill("SIGTERM");
  assert.equal(await exited, 0, err.slice(-2000));
  assert.match(err, /received SIGTERM: stopping/);
  assert.deepEqual(pids.filter(isAlive), [], "every process of the environment stopped");
  process.stderr.write(`# dev up --foreground: down ${Date.now() - t0} ms after SIGTERM\n`);
});

test("dev - up --node, down, up again; a node whose owner was SIGKILLed is reclaimed by the next up; a kept one is refused; down undoes every host change", async () => {
  const before = await hostState("/nonexistent-vuln-patcher-env");
  const [a, c, d] = ["a", "c", "d"].map((n) => `test-node-${n}-${process.pid}`) as [string, string, string];
  const upArgs = (name: string) => [...cli, "dev", "up", "--node", "--json", "--name", name];
  const up = async (name: string) => {
    const out = await run(process.execPath, upArgs(name), { cwd: REPO_ROOT, timeout: 300_000 });
    const state = JSON.parse(out.stdout) as {
      dir: string;
      kubeconfig: string;
      node: string;
      registry: string;
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
    assert.deepEqual(
      after.sysctls,
      before.sysctls,
      `${what}: the kernel settings the kubelet changed, restored`,
    );
    assert.deepEqual(after.hostDirs, before.hostDirs, `${what}: no host directory left`);
  };
  let staleDir: string | undefined;
  try {
    const first = await up(a);
    await down(a);
    await assertClean(first.dir, "after down");

    // A test process that dies with its node up (SIGKILL: no teardown runs).
    const owner = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `import { setup } from ${JSON.stringify(join(REPO_ROOT, "src", "devenv", "index.ts"))};
         const env = await setup({ node: true });
         process.stdout.write(JSON.stringify({ dir: env.dir, pids: env.endpoints().pids }) + "\\n");
         setInterval(() => {}, 1000);`,
      ],
      { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] },
    );
    const line = await new Promise<string>((resolve, reject) => {
      let buf = "";
      owner.stdout!.on("data", (b: Buffer) => {
        buf += b.toString();
        if (buf.includes("\n")) resolve(buf.split("\n")[0]!);
      });
      owner.once("exit", (code) => reject(new Error(`the owner exited (${code}) before its node was up`)));
    });
    const stale = JSON.parse(line) as { dir: string; pids: Record<string, number> };
    staleDir = stale.dir;
    owner.kill("SIGKILL");
    await new Promise((r) => owner.once("exit", r));
    assert.ok(Object.values(stale.pids).every(isAlive), "the dead owner's node is still running");

    const next = await up(c);
    assert.deepEqual(Object.values(stale.pids).filter(isAlive), [], "the next up stopped the stale node");
    assert.deepEqual((await hostState(stale.dir)).mounts, [], "and unmounted what it left");
    // c is kept by `dev up`: another up must not take it.
    const refused = await run(process.execPath, upArgs(d), { cwd: REPO_ROOT, timeout: 120_000 }).then(
      () => 0,
      (e: { code: number; stderr: string }) => (assert.match(e.stderr, /a node is up already/), e.code),
    );
    assert.notEqual(refused, 0, "a second node is refused while one is kept");
    assert.equal(existsSync(join(cacheDir(), "dev", d)), false, "the refused environment left no directory");
    await down(c);
    await assertClean(next.dir, "after reclaim and down");
  } finally {
    for (const n of [a, c, d]) await down(n).catch(() => {});
    if (staleDir) await rm(staleDir, { recursive: true, force: true });
  }
});
