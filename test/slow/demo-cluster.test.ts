// `npm run demo -- --cluster` end to end: the chart on a real node, a Deployment running
// the vulnerable image, the patch made by a copa Job Pod, the Deployment rolled out to the
// patched digest (the kubelet's imageID), and a clean host afterwards.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { REPO_ROOT, cacheDir } from "../../src/devenv/index.ts";
import { hostState } from "../../src/devenv/node.ts";

const run = promisify(execFile);

test("demo --cluster - runs to its end: patched by a copa Job Pod, the Deployment rolled out and its Pods running the patched digest; the host clean afterwards", async (t) => {
  const before = await hostState("/nonexistent-vuln-patcher-env");
  const name = `test-demo-cluster-${process.pid}`;
  const t0 = Date.now();
  const { stdout } = await run(
    process.execPath,
    [join(REPO_ROOT, "dist", "src", "cli", "main.js"), "demo", "--cluster", "--name", name],
    {
      cwd: REPO_ROOT,
      timeout: 1_500_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, LOG_LEVEL: "error" },
    },
  );
  t.diagnostic(`demo --cluster: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const step of ["PatchJob queued", "patching: copa on BuildKit", "pushed", "verified"])
    assert.match(stdout, new RegExp(step), step);
  const m = /(\d+) of (\d+) findings fixed; (\d+) workloads updated/.exec(stdout);
  assert.ok(m, stdout);
  assert.equal(m[1], m[2], "every finding fixed");
  assert.equal(m[3], "1", "the Deployment updated");
  assert.match(stdout, /Deployment\/shop \(app\): Updated -> \S+-patched@sha256:[0-9a-f]{64}/);
  assert.match(
    stdout,
    /both Pods of shop Ready and running sha256:[0-9a-f]{64} \(the kubelet's imageID\), [\d.]+ s after Succeeded/,
  );
  t.diagnostic(
    stdout
      .split("\n")
      .filter((l) => /after Succeeded|total/.test(l))
      .join(" | "),
  );
  const dir = join(cacheDir(), "dev", name);
  assert.equal(existsSync(dir), false, "no data left: the run was not kept");
  const now = await hostState(dir);
  assert.deepEqual(now.processes, [], "no process of the environment or its Pods");
  assert.deepEqual(now.mounts, []);
  assert.equal(now.bridge, false, "no bridge");
  assert.deepEqual(now.chains, before.chains, "no iptables chain of ours");
  assert.deepEqual(now.cgroups, [], "no kubepods cgroup");
  assert.deepEqual(now.hostDirs, before.hostDirs, "no host directory of the node's left");
});
