// `vuln-patcher patch`, the one-shot CLI, on the real BuildKit, copa and registry.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { goBinary, REPO_ROOT, type Env } from "../../src/devenv/index.ts";
import { ownImage, testEnv } from "../support/shared.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { parseImageRef } from "../../src/api/index.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import type { PatchSummary } from "../../src/cli/patch-summary.ts";

const run = promisify(execFile);
let env: Env;
let reportFile: string;
/** The vulnerable image in this file's own repository. */
const REPO = `cli-${process.pid}/debian`;
let IMAGE: { ref: string; digest: string };
const SECRET = "s3cr3t-never-printed";

async function cli(
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(
      process.execPath,
      [join(REPO_ROOT, "dist", "src", "cli", "main.js"), "patch", ...args],
      { cwd: REPO_ROOT, timeout: 600_000, env: { ...process.env, ...extraEnv } },
    );
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

before(async () => {
  env = await testEnv({ nats: false });
  IMAGE = await ownImage(env, REPO);
  const report = await honestReportForImage(IMAGE.ref, "r", "default");
  reportFile = join(env.dir, "report.json");
  await writeFile(reportFile, JSON.stringify(report));
});
after(async () => {
  await env?.stop();
});

test("patch CLI - with a report: patched, a before/after summary, credentials never echoed", async () => {
  const r = await cli(
    [
      "-i",
      IMAGE.ref,
      "-r",
      reportFile,
      "-a",
      env.buildkitAddr,
      "--copa",
      goBinary("copa"),
      "-t",
      "cli-patched",
      "--json",
      "-u",
      "robot",
    ],
    { REGISTRY_PASSWORD: SECRET },
  );
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as PatchSummary;
  assert.equal(s.result, "patched");
  assert.equal(s.patchedImage, `${env.registryHost}/${REPO}:cli-patched`);
  assert.ok(s.before.fixable > 0);
  assert.equal(s.after.fixed, s.before.fixable);
  assert.equal(s.after.remaining, 0);
  assert.ok(s.packages.every((p) => p.status === "fixed" && p.now === p.fixed));
  assert.doesNotMatch(r.stdout + r.stderr, new RegExp(SECRET));
  const tag = await new RegistryClient().manifestFor(parseImageRef(s.patchedImage!));
  assert.equal(tag?.digest, s.digest);
});

test("patch CLI - the patched image again: exit 0 and says no-op", async () => {
  const r = await cli([
    "-i",
    `${env.registryHost}/${REPO}:cli-patched`,
    "-r",
    reportFile,
    "-a",
    env.buildkitAddr,
    "--copa",
    goBinary("copa"),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^No-op: nothing to update/);
});

test("patch CLI - --dry-run (--no-push) only plans: packages, versions and CVEs, nothing built", async () => {
  const r = await cli([
    "-i",
    IMAGE.ref,
    "-r",
    reportFile,
    "-a",
    env.buildkitAddr,
    "--dry-run",
    "-t",
    "never",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Plan only: dry run: \d+ updates would be made; nothing was built/);
  assert.match(r.stdout, /^liblzma5\s+(CVE|GHSA)-\S+\s+\S+\s+\S+\s+planned$/m);
  const noPush = await cli([
    "-i",
    IMAGE.ref,
    "-r",
    reportFile,
    "-a",
    env.buildkitAddr,
    "--no-push",
    "-t",
    "never",
  ]);
  assert.equal(noPush.stdout, r.stdout, "--no-push is the same");
  assert.equal(
    await new RegistryClient().resolve(parseImageRef(`${env.registryHost}/${REPO}:never`)),
    undefined,
  );
});

test("patch CLI - without a report, copa updates every package", async () => {
  const r = await cli([
    "-i",
    IMAGE.ref,
    "-a",
    env.buildkitAddr,
    "--copa",
    goBinary("copa"),
    "-t",
    "all-patched",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as PatchSummary;
  assert.equal(s.result, "patched");
  assert.ok(
    s.packages.some((p) => p.name === "perl-base" && p.status === "fixed"),
    JSON.stringify(s.packages),
  );
});

const failures: Array<[string, string[], number, RegExp]> = [
  ["no image", [], 2, /--image is required/],
  ["a bad reference", ["-i", "UPPER/case"], 2, /invalid repository/],
  ["a bad duration", ["-i", "x", "--timeout", "soon"], 2, /--timeout/],
  ["a missing report file", ["-i", "x", "-r", "/nonexistent.yaml"], 2, /cannot read the report/],
  [
    "a registry address no request can reach",
    ["-i", "127.0.0.1:1/library/debian:12", "-a", "unix:///nonexistent.sock"],
    1,
    /InvalidRegistryAddress: registry 127\.0\.0\.1:1 cannot be reached at that address: bad port/,
  ],
  [
    "a registry that refuses connections",
    ["-i", "127.0.0.1:2/library/debian:12", "-a", "unix:///nonexistent.sock"],
    1,
    /RegistryUnreachable: .*ECONNREFUSED/,
  ],
];
for (const [what, args, code, re] of failures) {
  test(`patch CLI - ${what}: exit ${code} with one clear line`, async () => {
    const r = await cli(args);
    assert.equal(r.code, code, r.stderr);
    const lines = r.stderr
      .trim()
      .split("\n")
      .filter((l) => !l.startsWith("["));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^vuln-patcher: /);
    assert.match(lines[0]!, re);
  });
}

test("CLI - started on the system's older Node.js: exit 1 with one line that says so, no stack trace", async (t) => {
  // The machine's own Node (20 here); npm's Node 24 runs everything else.
  const system = ["/usr/bin/node", "/usr/local/bin/node"].find((p) => existsSync(p));
  const version = system ? (await run(system, ["--version"])).stdout.trim() : "";
  if (!system || Number(version.slice(1).split(".")[0]) >= 22) {
    t.skip(`no Node.js older than 22 on this machine (${system ?? "none"} ${version})`);
    return;
  }
  const r = await run(system, [join(REPO_ROOT, "dist", "src", "cli", "main.js"), "worker"], {
    cwd: REPO_ROOT,
  }).then(
    () => ({ code: 0, stderr: "" }),
    (e: { code?: number; stderr?: string }) => ({ code: e.code ?? -1, stderr: e.stderr ?? "" }),
  );
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `^vuln-patcher: Node\\.js ${version.slice(1).replace(/\./g, "\\.")} is too old: vuln-patcher needs 22\\.19\\.0 or newer`,
    ),
  );
});
