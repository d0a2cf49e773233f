import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MissingToolError, findTool } from "./tools.ts";

test("tools - PATH first, then the cache; a missing tool says what to run", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tools-"));
  const saved = process.env.VULN_PATCHER_CACHE;
  try {
    process.env.VULN_PATCHER_CACHE = join(dir, "cache");
    await mkdir(join(dir, "cache", "bin"), { recursive: true });
    await mkdir(join(dir, "path"));
    const cached = join(dir, "cache", "bin", "copa");
    const onPath = join(dir, "path", "copa");
    const empty = { PATH: join(dir, "nothing") };
    assert.throws(
      () => findTool("copa", undefined, empty),
      (e: unknown) =>
        e instanceof MissingToolError && e.code === "TOOL_MISSING" && /make setup/.test(e.message),
    );
    await writeFile(cached, "#!/bin/sh\n");
    await chmod(cached, 0o755);
    assert.equal(findTool("copa", undefined, empty), cached, "the cache when nothing is on PATH");
    await writeFile(onPath, "#!/bin/sh\n");
    assert.equal(findTool("copa", undefined, { PATH: join(dir, "path") }), cached, "not executable: skipped");
    await chmod(onPath, 0o755);
    assert.equal(findTool("copa", undefined, { PATH: join(dir, "path") }), onPath, "PATH wins");
    assert.equal(findTool("copa", cached, empty), cached, "an explicit path is taken as is");
    assert.throws(() => findTool("copa", join(dir, "nope"), empty), /not found at .*nope/);
  } finally {
    if (saved === undefined) delete process.env.VULN_PATCHER_CACHE;
    else process.env.VULN_PATCHER_CACHE = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
