// The test lanes. `npm test` runs them all (what CI runs); while working, run the one
// that covers the change:
//
//   unit         src/**/*.test.ts: pure logic, no environment, no root; all files at once.
//   integration  test/integration/**: the real components, one shared environment (etcd,
//                kube-apiserver, kube-controller-manager, registry, BuildKit) for every
//                file, each file in its own namespace, image repository and NATS server.
//   faults       test/faults/** and test/scale/**: each file its own environment (faults break
//                components on purpose; the scale tests load theirs), two at once.
//   slow         test/slow/**: a real node, QEMU, the demos: what is one per machine (or
//                would be slowed by another beside it), one at a time.
//
// Each file runs in its own `node --test` process, longest first (times from the last
// run), with a few at once; its output is printed when it ends, with its time, and the
// lanes' times come last. Usage: node --import tsx test/run.ts [lane ...] [-- file ...]
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { REPO_ROOT, cacheDir, setup, type Env } from "../src/devenv/index.ts";
import { installAllCRDs } from "../src/devenv/crds.ts";
import { SHARED_ENV_VAR, sharedEnvOptions, writeSharedEnv } from "./support/shared.ts";

interface Lane {
  name: string;
  dirs: string[];
  /** Files at once. */
  concurrency: number;
  /** Start the shared environment for this lane's files. */
  shared?: boolean;
}

const CPUS = availableParallelism();
const LANES: Lane[] = [
  { name: "unit", dirs: ["src"], concurrency: Math.max(2, CPUS) },
  { name: "integration", dirs: ["test/integration"], concurrency: 3, shared: true },
  { name: "faults", dirs: ["test/faults", "test/scale"], concurrency: 2 },
  { name: "slow", dirs: ["test/slow"], concurrency: 1 },
];

const TIMES_FILE = join(cacheDir(), "test-times.json");
/** Per-file time limit. */
const FILE_TIMEOUT_MS = 30 * 60_000;

function testFiles(dir: string): string[] {
  const abs = join(REPO_ROOT, dir);
  if (!existsSync(abs)) return [];
  const out: string[] = [];
  for (const e of readdirSync(abs)) {
    const p = join(abs, e);
    if (statSync(p).isDirectory()) {
      if (e !== "devenv" || dir !== "src") out.push(...testFiles(relative(REPO_ROOT, p)));
    } else if (e.endsWith(".test.ts")) out.push(relative(REPO_ROOT, p));
  }
  return out.sort();
}

function loadTimes(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(TIMES_FILE, "utf8")) as Record<string, number>;
  } catch {
    return {};
  }
}

interface FileResult {
  file: string;
  ms: number;
  ok: boolean;
}

function runFile(file: string, env: NodeJS.ProcessEnv): Promise<FileResult & { output: string }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--test", "--test-reporter=spec", `--test-timeout=${FILE_TIMEOUT_MS}`, "--import", "tsx", file],
      { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
    );
    const chunks: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => chunks.push(b));
    child.stderr.on("data", (b: Buffer) => chunks.push(b));
    child.on("close", (code) =>
      resolve({ file, ms: Date.now() - t0, ok: code === 0, output: Buffer.concat(chunks).toString("utf8") }),
    );
  });
}

/** A pool of `concurrency` files at once, longest first. */
async function runFiles(
  files: string[],
  concurrency: number,
  env: NodeJS.ProcessEnv,
  times: Record<string, number>,
) {
  const queue = [...files].sort((a, b) => (times[b] ?? 60_000) - (times[a] ?? 60_000));
  const results: FileResult[] = [];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const r = await runFile(f, env);
      process.stdout.write(
        `\n=== ${r.ok ? "PASS" : "FAIL"} ${r.file} (${(r.ms / 1000).toFixed(1)} s)\n${r.output}`,
      );
      results.push(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  return results;
}

async function runLane(lane: Lane, only: string[] | undefined, times: Record<string, number>) {
  const files = lane.dirs.flatMap(testFiles).filter((f) => !only || only.includes(f));
  if (!files.length) return { lane: lane.name, ms: 0, results: [] as FileResult[] };
  const t0 = Date.now();
  let env: Env | undefined;
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  try {
    if (lane.shared) {
      process.stdout.write(`\n--- ${lane.name}: starting the shared environment\n`);
      env = await setup(sharedEnvOptions());
      await installAllCRDs(env.kubeConfig(), { defaultPolicy: false });
      const file = join(mkdtempSafe(), "shared-env.json");
      writeSharedEnv(file, env);
      childEnv[SHARED_ENV_VAR] = file;
      process.stdout.write(
        `--- ${lane.name}: shared environment up in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    }
    const results = await runFiles(files, lane.concurrency, childEnv, times);
    return { lane: lane.name, ms: Date.now() - t0, results };
  } finally {
    await env?.stop();
  }
}

function mkdtempSafe(): string {
  const d = join(tmpdir(), `vuln-patcher-lanes-${process.pid}`);
  mkdirSync(d, { recursive: true });
  return d;
}

async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const names = (dash < 0 ? argv : argv.slice(0, dash)).filter(Boolean);
  const only = dash < 0 ? undefined : argv.slice(dash + 1);
  const wanted = !names.length || names.includes("all") ? LANES : LANES.filter((l) => names.includes(l.name));
  if (!wanted.length) {
    process.stderr.write(
      `unknown lane: ${names.join(" ")} (lanes: ${LANES.map((l) => l.name).join(", ")}, all)\n`,
    );
    return 2;
  }
  const times = loadTimes();
  const t0 = Date.now();
  const lanes = [];
  for (const lane of wanted) lanes.push(await runLane(lane, only, times));
  const all = lanes.flatMap((l) => l.results);
  for (const r of all) times[r.file] = r.ms;
  mkdirSync(cacheDir(), { recursive: true });
  writeFileSync(TIMES_FILE, JSON.stringify(times, null, 1));
  const failed = all.filter((r) => !r.ok);
  const lines = [
    "",
    "=== test lanes",
    ...lanes.map(
      (l) =>
        `  ${l.lane.padEnd(12)} ${(l.ms / 60_000).toFixed(1).padStart(5)} min  ${l.results.length} files`,
    ),
    `  ${"total".padEnd(12)} ${((Date.now() - t0) / 60_000).toFixed(1).padStart(5)} min`,
    "=== slowest files",
    ...[...all]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 12)
      .map((r) => `  ${(r.ms / 1000).toFixed(1).padStart(7)} s  ${r.file}`),
    failed.length
      ? `=== FAILED: ${failed.map((r) => r.file).join(", ")}`
      : `=== all ${all.length} files passed`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return failed.length ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
