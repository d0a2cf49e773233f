// The README's first command, end to end: `vuln-patcher demo` on the real components.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { REPO_ROOT, cacheDir } from "../../src/devenv/index.ts";

const run = promisify(execFile);

test("demo - runs to the end, prints the before/after table and leaves no process and no data behind", async () => {
  const name = `test-demo-${process.pid}`;
  const { stdout } = await run(
    process.execPath,
    [join(REPO_ROOT, "dist", "src", "cli", "main.js"), "demo", "--name", name],
    {
      cwd: REPO_ROOT,
      timeout: 900_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, LOG_LEVEL: "error" },
    },
  );
  assert.match(
    stdout,
    /web UI: http:\/\/127\.0\.0\.1:\d+\/ {2}\(token to paste: cat \S+ui-token; namespace default\)/,
  );
  assert.doesNotMatch(stdout, /eyJ[A-Za-z0-9_-]{10,}/, "the token itself is never printed");
  for (const step of ["report seen", "PatchJob queued", "patching: copa on BuildKit", "pushed", "verified"])
    assert.match(stdout, new RegExp(step), step);
  assert.match(stdout, /PACKAGE\s+CVE\s+INSTALLED\s+FIXED IN\s+NOW\s+STATUS/);
  const m = /(\d+) of (\d+) findings fixed/.exec(stdout);
  assert.ok(m, stdout);
  assert.equal(m[1], m[2], "every finding fixed");
  const { stdout: ps } = await run("ps", ["-eo", "pid,args"]);
  assert.doesNotMatch(ps, new RegExp(`dev/${name}/`), "no process of the demo environment left");
  assert.equal(existsSync(join(cacheDir(), "dev", name)), false, "and no data: the run was not kept");
});
