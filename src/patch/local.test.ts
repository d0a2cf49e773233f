// The local executor's last line of defence: a copa that hangs and ignores both its own
// --timeout and SIGTERM. Real copa honours its timeout (the fault suite shows that with
// a real patch), so the hang here is a SIMULATION: a script standing in for a copa
// stuck in a syscall, with a child of its own, both of which must be gone afterwards.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, writeFile, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { localExecutor } from "./local.ts";
import { classifyCopaRun } from "./outcome.ts";

/** Running (a zombie waiting for a reaper that is not ours counts as gone). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !/^\d+ \(.*\) Z/.test(stat);
}

test("local executor - a hung copa (SIMULATED) that ignores SIGTERM is killed with its children at the limit, and reported as a timeout", async () => {
  const dir = await mkdtemp(join(tmpdir(), "hung-copa-"));
  try {
    const script = join(dir, "copa");
    const pids = join(dir, "pids");
    await writeFile(
      script,
      `#!/bin/sh\ntrap '' TERM\nsleep 300 &\necho "$$ $!" > ${JSON.stringify(pids)}\necho "patching..."\nwait\nwait\n`,
      { mode: 0o755 },
    );
    const t0 = Date.now();
    const run = await localExecutor({ copaPath: script, killGraceMs: 500 }).run({
      id: "hung-1",
      args: () => ["patch", "--image", "x"],
      timeoutMs: 1000,
    });
    const ms = Date.now() - t0;
    assert.equal(run.timedOut, true);
    assert.equal(run.signal, "SIGKILL", "SIGTERM was ignored, so SIGKILL ended it");
    assert.ok(ms < 10_000, `ended in ${ms} ms`);
    assert.match(run.outputTail, /patching/);
    const [shell, child] = (await readFile(pids, "utf8")).trim().split(" ").map(Number);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await alive(shell!), false, "the hung copa is gone");
    assert.equal(await alive(child!), false, "and so is its child");
    const verdict = classifyCopaRun(run, "1s");
    assert.equal(verdict.kind, "failed");
    if (verdict.kind === "failed") {
      assert.equal(verdict.reason, "Timeout");
      assert.equal(verdict.transient, true);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("local executor - a run's credentials (SIMULATED copa that reports what it sees): its own DOCKER_CONFIG, private, gone afterwards", async () => {
  const dir = await mkdtemp(join(tmpdir(), "creds-copa-"));
  try {
    const script = join(dir, "copa");
    // Prints the directory, the file's mode and content.
    await writeFile(
      script,
      `#!/bin/sh\necho "dir=$DOCKER_CONFIG"\nstat -c 'mode=%a' "$DOCKER_CONFIG/config.json"\ncat "$DOCKER_CONFIG/config.json"\n`,
      { mode: 0o755 },
    );
    const config = '{"auths":{"reg.a:5000":{"auth":"dGVhbS1hOnNlY3JldA=="}}}';
    const run = await localExecutor({ copaPath: script, env: { DOCKER_CONFIG: "/the/workers/own" } }).run({
      id: "creds-1",
      args: () => ["patch"],
      timeoutMs: 10_000,
      dockerConfig: config,
    });
    assert.equal(run.exitCode, 0, run.outputTail);
    const seen = /dir=(\S+)/.exec(run.outputTail)?.[1];
    assert.ok(seen && seen !== "/the/workers/own", `a directory of the run's own: ${seen}`);
    assert.match(run.outputTail, /mode=600/);
    assert.ok(run.outputTail.includes(config));
    await assert.rejects(readFile(join(seen!, "config.json")), "removed with the run");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
