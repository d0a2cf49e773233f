// npm run bench [-- --quick] [-- --only P1,P4]: how fast and how lean, measured against the
// physical floors, side by side in one run on the real environment. Prints a table and
// writes JSON lines to bench-results/bench-<time>.jsonl. Not part of the test command.
import { mkdir, appendFile, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { setup, goBinary, freePort, REPO_ROOT, type Env } from "../src/devenv/index.ts";
import { installAllCRDs } from "../src/devenv/crds.ts";
import { createNamespace, reportsApi } from "../src/devenv/kube.ts";
import { honestReport } from "../src/devenv/honest-report.ts";
import {
  startCli,
  startControllerCli,
  metricValue,
  localWorkerArgs,
  type CliProcess,
} from "../test/support/cli.ts";
import { getPatchJob } from "../test/support/patchjobs.ts";
import { streamState } from "../test/support/stream.ts";
import { waitFor } from "../src/devenv/wait.ts";
import { makeReport } from "../test/fixtures/make-report.ts";
import { convertReport, parseImageRef, parseReport, toUpdateManifest } from "../src/api/index.ts";
import { readPackageDB, RegistryClient } from "../src/registry/index.ts";
import { installCRDs, PARTIAL_METADATA_LIST, rawGet } from "../src/kube/index.ts";
import { pushVariant, retag } from "../src/devenv/variants.ts";
import { buildClusterImages } from "../src/devenv/cluster-images.ts";
import { helm, installChart } from "../src/devenv/chart.ts";
import { sbomscannerCRDs } from "../src/devenv/crds.ts";
import { honestReportForImage } from "../src/devenv/honest-report.ts";
import { decisionTimes, healthzUnderLoad, PATHOLOGICAL } from "./patterns.ts";
import { METADATA_PAGE_SIZE } from "../src/controller/caches.ts";

const run = promisify(execFile);
const { values: flags } = parseArgs({ options: { quick: { type: "boolean" }, only: { type: "string" } } });
const QUICK = !!flags.quick;
const ONLY = flags.only ? new Set(flags.only.split(",")) : undefined;
const want = (id: string) => !ONLY || ONLY.has(id);

interface Result {
  id: string;
  name: string;
  floor: string;
  goal: string;
  value: number;
  unit: string;
  met: boolean;
  details: Record<string, unknown>;
}

const results: Result[] = [];
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
const outDir = join(REPO_ROOT, "bench-results");
const outFile = join(outDir, `bench-${stamp}.jsonl`);
const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

async function record(r: Result): Promise<void> {
  results.push(r);
  await appendFile(outFile, JSON.stringify({ ...r, quick: QUICK, at: new Date().toISOString() }) + "\n");
  log(`${r.id} ${r.name}: ${r.value} ${r.unit} (goal ${r.goal}) ${r.met ? "MET" : "MISSED"}`);
}

/** Whole-machine CPU time counters from /proc/stat: [busy, total] jiffies. */
function cpuTimes(): [number, number] {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return [total - idle, total];
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (USER_HZ = 100). */
function cpuSecondsOf(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds used by each process between start() and the returned function's call. */
function cpuMeter(pids: Record<string, number | undefined>): () => Record<string, number> {
  const t0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSecondsOf(pid)]));
  return () =>
    Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, +(cpuSecondsOf(pid) - t0[k]!).toFixed(1)]));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

async function startPipeline(
  env: Env,
  workers: number,
  concurrency: number,
  /** Several BuildKits, comma-separated (P8). @default the environment's one */
  buildkitAddr?: string,
): Promise<{ controller: CliProcess; workers: CliProcess[] }> {
  const controller = await startControllerCli(env, ["--log-level", "warn"]);
  const ws: CliProcess[] = [];
  for (let i = 0; i < workers; i++) {
    const port = await freePort();
    ws.push(
      await startCli(
        [
          ...localWorkerArgs({
            kubeconfig: env.kubeconfig,
            natsURL: env.natsURL,
            buildkitAddr: buildkitAddr ?? env.buildkitAddr,
          }),
          "--concurrency",
          String(concurrency),
          "--identity",
          `bench-worker-${i}`,
          "--listen",
          `127.0.0.1:${port}`,
          "--log-level",
          // info: the stage timestamps are P1's profile
          "info",
        ],
        { logDir: env.dir, name: `worker-${i}`, listenPort: port },
      ),
    );
  }
  return { controller, workers: ws };
}

async function stopAll(p: { controller: CliProcess; workers: CliProcess[] }): Promise<void> {
  await Promise.all(p.workers.map((w) => w.stop()));
  await p.controller.stop();
}

/** The update manifest copa reads (-r) for a report, written to a file. */
async function manifestOf(env: Env, report: unknown, file: string): Promise<string> {
  const parsed = parseReport(report);
  if (!parsed.ok) throw new Error(parsed.message);
  const conv = convertReport(parsed.value);
  if (!conv.ok) throw new Error(conv.message);
  const path = join(env.dir, file);
  await writeFile(path, JSON.stringify(toUpdateManifest(conv.value)));
  return path;
}

/** `copa patch` by hand, as a user would run it: the floor vuln-patcher is measured against. */
async function rawCopa(env: Env, src: string, manifestFile: string, target: string): Promise<void> {
  await run(
    goBinary("copa"),
    [
      "patch",
      "-i",
      src,
      "-r",
      manifestFile,
      "-s",
      "native",
      "-t",
      target,
      "--push",
      "-a",
      env.buildkitAddr,
      "--timeout",
      "10m",
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
}

async function reportFor(env: Env, name: string, tag: string, digest: string, repository?: string) {
  const registry = new RegistryClient();
  const vulnerable = parseImageRef(env.images!.vulnerable);
  const image = { ...vulnerable, repository: repository ?? vulnerable.repository };
  const src = await registry.manifestFor({ ...image, tag, digest: undefined });
  const db = await readPackageDB(registry, image, src!.manifest.layers, { debianVersion: true });
  return honestReport({
    name,
    namespace: "default",
    registryURI: env.registryHost,
    repository: image.repository,
    tag,
    digest,
    installed: db.packages,
    debianVersion: db.debianVersion,
  });
}

async function waitSucceeded(env: Env, name: string, timeoutMs = 600_000): Promise<void> {
  const kc = env.kubeConfig();
  await waitFor(
    `${name} Succeeded`,
    async () => {
      const pj = await getPatchJob(kc, "default", name).catch(() => undefined);
      if (pj?.status?.phase === "Failed") throw new Error(`${name} failed: ${pj.status.message}`);
      return pj?.status?.phase === "Succeeded" || undefined;
    },
    timeoutMs,
    100,
  );
}

/**
 * Where the system's time goes for one PatchJob, from the worker's JSON log: report
 * created -> worker starts (controller + queue + claim), then each stage the worker logs.
 */
function stageProfile(logFile: string, key: string, createdAt: number): Record<string, number> {
  const lines = readFileSync(logFile, "utf8")
    .split("\n")
    .filter((l) => l.includes(`"${key}"`))
    .map((l) => JSON.parse(l) as { time: string; stage?: string; msg: string });
  const at = (pred: (l: { stage?: string; msg: string }) => boolean) => {
    const l = lines.find(pred);
    return l ? Date.parse(l.time) : NaN;
  };
  const resolve = at((l) => l.stage === "resolve");
  const copa = at((l) => l.stage === "copa");
  const verify = at((l) => l.stage === "verify");
  const done = at((l) => l.msg === "patched");
  return {
    queueAndClaim: resolve - createdAt,
    plan: copa - resolve,
    copa: verify - copa,
    verifyAndRecord: done - verify,
  };
}

// ---- P1 orchestration overhead, and P4 redundant work on the same stack ----
async function p1p4(): Promise<void> {
  await using env = await setup({ buildkit: true });
  await installAllCRDs(env.kubeConfig());
  const reports = reportsApi(env.kubeConfig());
  const pipe = await startPipeline(env, 1, 1);
  try {
    const rounds = QUICK ? 2 : 4; // the first round of each kind warms BuildKit and is not counted
    const raw: number[] = [];
    const sys: number[] = [];
    const profiles: Array<Record<string, number>> = [];
    const digest = env.images!.vulnerableDigest;
    const template = await reportFor(env, "template", "bookworm-vuln", digest);
    const manifestFile = await manifestOf(env, template, "p1-manifest.json");
    const src = `${env.registryHost}/library/debian@${digest}`;
    for (let i = 0; i < rounds; i++) {
      // (a) the floor: copa by hand, same source, same updates, fresh tag.
      let t = performance.now();
      await rawCopa(env, src, manifestFile, `${env.registryHost}/library/debian:p1-raw-${i}`);
      const a = performance.now() - t;
      // (b) the system: report created -> PatchJob Succeeded (verified digest).
      const tag = `p1-src-${i}`;
      await retag(env.registryHost, "library/debian", "bookworm-vuln", tag);
      const rep = structuredClone(template) as any;
      rep.metadata.name = `p1-${i}`;
      rep.imageMetadata.tag = tag;
      t = performance.now();
      const createdAt = Date.now();
      await reports.create(rep);
      await waitSucceeded(env, `p1-${i}`);
      const b = performance.now() - t;
      const stages = stageProfile(join(env.dir, "worker-0.log"), `default/p1-${i}`, createdAt);
      log(
        `P1 round ${i}: raw copa ${(a / 1000).toFixed(1)} s, system ${(b / 1000).toFixed(1)} s${i === 0 ? " (warm-up, not counted)" : ""}; ${JSON.stringify(stages)}`,
      );
      if (i > 0) {
        raw.push(a);
        sys.push(b);
        profiles.push(stages);
      }
    }
    const ratio = median(sys) / median(raw);
    await record({
      id: "P1",
      name: "orchestration overhead (system / raw copa, medians)",
      floor: "raw copa patch",
      goal: "<= 1.10",
      value: +ratio.toFixed(3),
      unit: "x",
      met: ratio <= 1.1,
      details: { rawMs: raw.map(Math.round), systemMs: sys.map(Math.round), stagesMs: profiles },
    });

    // P4: rescans of already-patched reports: labels and resourceVersion only.
    const stream0 = await streamState(env.natsURL);
    const copa0 = metricValue(
      await pipe.workers[0]!.metrics(),
      "vuln_patcher_patches_total",
      'outcome="succeeded"',
    );
    const names = Array.from({ length: rounds }, (_, i) => `p1-${i}`);
    for (let i = 0; i < 100; i++) {
      const name = names[i % names.length]!;
      const cur = await reports.get("default", name);
      cur.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = `rescan-${i}`;
      await reports.replace(cur);
    }
    await new Promise((r) => setTimeout(r, 5000));
    const msgs = (await streamState(env.natsURL)).lastSeq - stream0.lastSeq;
    const copaRuns =
      metricValue(await pipe.workers[0]!.metrics(), "vuln_patcher_patches_total", 'outcome="succeeded"') -
      copa0;
    await record({
      id: "P4",
      name: "redundant work over 100 rescans (copa runs + messages)",
      floor: "0",
      goal: "0 and 0",
      value: copaRuns + msgs,
      unit: "runs+msgs",
      met: copaRuns === 0 && msgs === 0,
      details: { copaRuns, messages: msgs, rescans: 100 },
    });
  } finally {
    await stopAll(pipe);
  }
}

// ---- P2 parallel patching, against copa's own parallel speed-up ----
async function p2(): Promise<void> {
  await using env = await setup({ buildkit: true });
  await installAllCRDs(env.kubeConfig());
  const reports = reportsApi(env.kubeConfig());
  const N = 4;
  /** N new images (a marker layer each, so no build is cached), and their reports. */
  const images = async (label: string) => {
    const out = [];
    for (let i = 0; i < N; i++) {
      const tag = `p2-${label}-${i}`;
      const digest = await pushVariant(
        env.registryHost,
        "library/debian",
        "bookworm-vuln",
        tag,
        `${label}-${i}`,
      );
      out.push({ tag, digest, report: (await reportFor(env, `p2-${label}-${i}`, tag, digest)) as any });
    }
    return out;
  };
  const timed = async (f: () => Promise<unknown>) => {
    const t = performance.now();
    const [b0, t0] = cpuTimes();
    await f();
    const [b1, t1] = cpuTimes();
    return { ms: performance.now() - t, cpuBusy: (b1 - b0) / (t1 - t0) };
  };
  const batch = async (label: string, workers: number) => {
    const made = await images(label);
    const pipe = await startPipeline(env, workers, 1);
    try {
      return await timed(async () => {
        await Promise.all(made.map((m) => reports.create(m.report)));
        await Promise.all(made.map((m) => waitSucceeded(env, m.report.metadata.name)));
      });
    } finally {
      await stopAll(pipe);
    }
  };
  /** The same with copa alone: one at a time, or all N at once, on the same BuildKit. */
  const rawBatch = async (label: string, parallel: boolean) => {
    const made = await images(label);
    const jobs = await Promise.all(
      made.map(async (m, i) => ({
        src: `${env.registryHost}/library/debian@${m.digest}`,
        manifest: await manifestOf(env, m.report, `p2-${label}-${i}.json`),
        target: `${env.registryHost}/library/debian:${m.tag}-raw`,
      })),
    );
    return timed(async () => {
      if (parallel) await Promise.all(jobs.map((j) => rawCopa(env, j.src, j.manifest, j.target)));
      else for (const j of jobs) await rawCopa(env, j.src, j.manifest, j.target);
    });
  };
  await batch("warm", N); // BuildKit's tooling image and apt lists, once
  const seq = await batch("seq", 1);
  const par = await batch("par", N);
  const rawSeq = await rawBatch("rawseq", false);
  const rawPar = await rawBatch("rawpar", true);
  const speedup = seq.ms / par.ms;
  const rawSpeedup = rawSeq.ms / rawPar.ms;
  const ratio = speedup / rawSpeedup;
  const cores = (await import("node:os")).availableParallelism();
  const s = (x: { ms: number; cpuBusy: number }) =>
    `${(x.ms / 1000).toFixed(1)} s (CPU ${(x.cpuBusy * 100).toFixed(0)}% busy)`;
  log(`P2: vuln-patcher one at a time ${s(seq)}, ${N} workers ${s(par)}: ${speedup.toFixed(2)}x`);
  log(`P2: copa alone one at a time ${s(rawSeq)}, ${N} at once ${s(rawPar)}: ${rawSpeedup.toFixed(2)}x`);
  await record({
    id: "P2",
    name: `parallel patching (${N} images): vuln-patcher's speed-up (1 -> ${N} workers) / copa's own (1 -> ${N} at once)`,
    floor: `copa's own parallel speed-up here: ${rawSpeedup.toFixed(2)}x (${cores} cores)`,
    goal: ">= 0.9",
    value: +ratio.toFixed(2),
    unit: `(${speedup.toFixed(2)}x / ${rawSpeedup.toFixed(2)}x)`,
    met: ratio >= 0.9,
    details: {
      sequentialMs: Math.round(seq.ms),
      parallelMs: Math.round(par.ms),
      rawSequentialMs: Math.round(rawSeq.ms),
      rawParallelMs: Math.round(rawPar.ms),
      cpuBusy: { seq: seq.cpuBusy, par: par.cpuBusy, rawSeq: rawSeq.cpuBusy, rawPar: rawPar.cpuBusy },
      cores,
    },
  });
}

// ---- P3 controller scale, and P5 queue latency on the same stack ----
async function rawList(
  env: Env,
  path: string,
  o: { accept?: string; limit?: number } = {},
): Promise<{ ms: number; items: number; bytes: number; requests: number }> {
  const kc = env.kubeConfig();
  let items = 0;
  let bytes = 0;
  let requests = 0;
  let cont = "";
  const t = performance.now();
  do {
    const q = `limit=${o.limit ?? 500}${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`;
    const r = await rawGet(kc, `${path}?${q}`, {
      accept: o.accept ?? "application/json",
      timeoutMs: 600_000,
    });
    if (r.status !== 200) throw new Error(`LIST ${path}: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
    requests++;
    bytes += r.bytes;
    const page = JSON.parse(r.body) as { items: unknown[]; metadata: { continue?: string } };
    items += page.items.length;
    cont = page.metadata.continue ?? "";
  } while (cont);
  return { ms: performance.now() - t, items, bytes, requests };
}

/** Peak RSS (VmHWM) of a process, in MB. */
function peakRssMB(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

/** The other floor of P3: the PatchJob writes themselves (create + status), with no controller. */
async function writeFloor(env: Env, n: number): Promise<number> {
  const kc = env.kubeConfig();
  await createNamespace(kc, "writefloor");
  const { patchJobClient } = await import("../src/kube/patchjobs.ts");
  const client = patchJobClient(kc);
  const spec = (await import("../test/support/patchjobs.ts")).manualSpec(
    `${"127.0.0.1:5000"}/library/debian:x`,
    "sha256:" + "a".repeat(64),
  );
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < n) {
        const i = next++;
        const pj = await client.create({ metadata: { name: `w-${i}`, namespace: "writefloor" }, spec });
        await client.updateStatus(pj, { phase: "Queued", observedGeneration: 1 });
      }
    }),
  );
  return performance.now() - t;
}

async function p3p5(): Promise<void> {
  const N = QUICK ? 1000 : 10_000;
  await using env = await setup({ registry: false, controllerManager: false, etcdQuotaBytes: 8 * 1024 ** 3 });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  await createNamespace(kc, "scale");
  const reports = reportsApi(kc);
  const template = makeReport({ name: "t", namespace: "scale", sizeBytes: 150_000 });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < N) {
        const i = next++;
        const r = structuredClone(template);
        r.metadata.name = `r-${i}`;
        r.imageMetadata.tag = `v${i}`;
        r.imageMetadata.digest = "sha256:" + i.toString(16).padStart(64, "0");
        await reports.create(r);
      }
    }),
  );
  log(
    `P3: created ${N} reports of ${Math.round(JSON.stringify(template).length / 1024)} KB in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  const stackPids = {
    "kube-apiserver": env.controlPlane!.apiserver.pid,
    etcd: env.controlPlane!.etcd.pid,
  };
  const listCpu = cpuMeter({ ...stackPids, bench: process.pid });
  const list = await rawList(
    env,
    "/apis/storage.sbomscanner.kubewarden.io/v1alpha1/namespaces/scale/vulnerabilityreports",
  );
  log(
    `P3: raw LIST of ${list.items} reports (${(list.bytes / 1e6).toFixed(0)} MB) in ${(list.ms / 1000).toFixed(1)} s`,
  );
  const listCpuUsed = listCpu();
  log(`P3: CPU seconds during the raw LIST: ${JSON.stringify(listCpuUsed)}`);
  // The other floor, measured before the controller runs (it would queue these PatchJobs).
  const writesCpu = cpuMeter({ ...stackPids, bench: process.pid });
  const writes = await writeFloor(env, N);
  const writesCpuUsed = writesCpu();
  log(`P3: CPU seconds during the writes alone: ${JSON.stringify(writesCpuUsed)}`);
  log(
    `P3: the writes alone (create + status of ${N} PatchJobs, 8 at a time, no controller): ${(writes / 1000).toFixed(1)} s`,
  );
  const NODE_OPTIONS = "--max-old-space-size=192 --max-semi-space-size=8";
  const controller = (namespace: string, name: string) =>
    startControllerCli(env, ["--namespaces", namespace, "--concurrency", "8", "--log-level", "warn"], {
      name,
      env: { NODE_OPTIONS },
    });
  // The baseline: the same controller with nothing to do (a namespace without reports),
  // its caches synced, everything loaded.
  await createNamespace(kc, "p3-empty");
  const idle = await controller("p3-empty", "controller-baseline");
  let baselineRss: number;
  try {
    await waitFor(
      "the idle controller's caches synced",
      async () => metricValue(await idle.metrics(), "vuln_patcher_informer_lists_total") >= 4 || undefined,
      60_000,
      200,
    );
    baselineRss = peakRssMB(idle.pid);
  } finally {
    await idle.stop();
  }
  log(`P3: controller peak RSS with nothing to do (baseline): ${baselineRss.toFixed(0)} MB`);
  const t1 = performance.now();
  const ctl = await controller("scale", "controller");
  const ctlCpu = cpuMeter({ ...stackPids, controller: ctl.pid });
  try {
    await waitFor(
      `${N} Queued`,
      async () =>
        metricValue(await ctl.metrics(), "vuln_patcher_patchjobs", 'phase="Queued"') >= N || undefined,
      3_600_000,
      500,
    );
    const ms = performance.now() - t1;
    const ctlCpuUsed = ctlCpu();
    log(
      `P3: CPU seconds from controller start to all Queued: ${JSON.stringify(ctlCpuUsed)} in ${(ms / 1000).toFixed(1)} s wall`,
    );
    const rss = peakRssMB(ctl.pid);
    const ratio = ms / list.ms;
    // The relist of unchanged reports: the request the controller's informer makes
    // (metadata only, METADATA_PAGE_SIZE a page) against the full LIST above.
    const meta = await rawList(
      env,
      "/apis/storage.sbomscanner.kubewarden.io/v1alpha1/namespaces/scale/vulnerabilityreports",
      { accept: PARTIAL_METADATA_LIST, limit: METADATA_PAGE_SIZE },
    );
    const share = meta.bytes / list.bytes;
    log(
      `P3: metadata relist of ${meta.items} reports: ${(meta.bytes / 1e6).toFixed(2)} MB in ${meta.requests} requests, ${(meta.ms / 1000).toFixed(2)} s (${(share * 100).toFixed(2)}% of the full LIST's ${(list.bytes / 1e6).toFixed(0)} MB)`,
    );
    await record({
      id: "P3",
      name: `controller scale (${N} reports: start -> all Queued / raw LIST)`,
      floor: `raw LIST ${(list.ms / 1000).toFixed(1)} s`,
      goal: "<= 2",
      value: +ratio.toFixed(2),
      unit: "x",
      met: ratio <= 2,
      details: {
        reports: N,
        queuedMs: Math.round(ms),
        rawListMs: Math.round(list.ms),
        listBytes: list.bytes,
        writeFloorMs: Math.round(writes),
        vsListPlusWrites: +(ms / (list.ms + writes)).toFixed(2),
        cpuSeconds: { rawList: listCpuUsed, writesAlone: writesCpuUsed, controllerRun: ctlCpuUsed },
      },
    });
    await record({
      id: "P3-RSS",
      name: `controller peak RSS (${N} reports)`,
      floor: `the same controller with nothing to do: ${Math.round(baselineRss)} MB (measured)`,
      goal: "<= 150 MB",
      value: Math.round(rss),
      unit: "MB",
      met: rss <= 150,
      details: { baselineMB: Math.round(baselineRss), nodeOptions: NODE_OPTIONS },
    });
    await record({
      id: "P3-RELIST",
      name: `relist of ${meta.items} unchanged reports (metadata) / full LIST, bytes`,
      floor: "names, uids and resourceVersions only",
      goal: "< 5%",
      value: +(share * 100).toFixed(2),
      unit: "%",
      met: share < 0.05,
      details: {
        metadataBytes: meta.bytes,
        fullBytes: list.bytes,
        metadataMs: Math.round(meta.ms),
        fullMs: Math.round(list.ms),
        requests: meta.requests,
      },
    });

    // P5: report update -> message on the stream, at 100 updates/s.
    const nc = await connect({ servers: env.natsURL });
    // Arrival times of messages, per report.
    const seen = new Map<string, number[]>();
    const sub = nc.subscribe("vulnpatcher.patch.scale.>");
    void (async () => {
      for await (const m of sub) {
        const r = m.json<{ name: string; generation: number }>();
        seen.set(r.name, [...(seen.get(r.name) ?? []), performance.now()]);
      }
    })();
    const updates = QUICK ? 300 : 1000;
    const targets = 100;
    const sent = new Map<string, number>();
    const start = performance.now();
    // Open loop at 100/s, but at most MAX_IN_FLIGHT requests outstanding, as a real
    // client would (an unbounded generator only measures the apiserver's overload).
    // When the apiserver cannot keep up, the achieved rate says so.
    const MAX_IN_FLIGHT = 16;
    let inFlight = 0;
    let failed = 0;
    const errors = new Map<string, number>();
    for (let i = 0; i < updates; i++) {
      const due = start + i * 10; // 100 per second
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      while (inFlight >= MAX_IN_FLIGHT) await new Promise((r) => setTimeout(r, 2));
      const name = `r-${i % targets}`;
      inFlight++;
      void reports
        .jsonPatch("scale", name, [
          {
            op: "replace",
            path: "/report/results/0/vulnerabilities/0/fixedVersions",
            value: [`5.4.1-1+deb12u${100 + i}`],
          },
        ])
        .then(() => sent.set(`${name}@${i}`, performance.now()))
        .catch((err: Error) => {
          failed++;
          const key = err.message.slice(0, 120);
          errors.set(key, (errors.get(key) ?? 0) + 1);
        })
        .finally(() => inFlight--);
    }
    while (inFlight > 0) await new Promise((r) => setTimeout(r, 10));
    const achieved = updates / ((performance.now() - start) / 1000);
    for (const [e, n] of errors) log(`P5: ${n} updates failed: ${e}`);
    await new Promise((r) => setTimeout(r, 5000));
    // An update is served by the first message for its report that arrives after it
    // (updates that land while a reconcile is under way share the next message).
    const lat: number[] = [];
    let unserved = 0;
    for (const [k, t] of sent) {
      const name = k.split("@")[0]!;
      const got = (seen.get(name) ?? []).find((at) => at > t);
      if (got !== undefined) lat.push(got - t);
      else unserved++;
    }
    sub.unsubscribe();
    await nc.close();
    const p50 = pct(lat, 50);
    const p99 = pct(lat, 99);
    await record({
      id: "P5",
      name: `queue latency (report update -> message) at ${achieved.toFixed(0)}/s of 100/s asked, p50 / p99`,
      floor: "one watch event + one publish (~5 ms)",
      goal: "reported (no goal set)",
      value: Math.round(p50),
      unit: `ms p50, p99 ${Math.round(p99)} ms`,
      met: true,
      details: {
        p50: Math.round(p50),
        p99: Math.round(p99),
        measured: lat.length,
        unserved,
        updates,
        failed,
        maxInFlight: MAX_IN_FLIGHT,
        ratePerSecond: +achieved.toFixed(0),
        messages: [...seen.values()].reduce((n, a) => n + a.length, 0),
      },
    });
  } finally {
    await ctl.stop();
  }
}

// ---- P6 the in-cluster path on a real node, against the same patch by local processes ----
async function p6(): Promise<void> {
  const secs = (ms: number) => +(ms / 1000).toFixed(1);
  const t0 = Date.now();
  await using env = await setup({ node: true, buildkit: true });
  const envUp = Date.now() - t0;
  const kc = env.kubeConfig();
  const build = async () => {
    const t = Date.now();
    const images = await buildClusterImages({
      dir: env.dir,
      registry: env.registryHost,
      buildkitAddr: env.buildkitAddr,
    });
    return { images, ms: Date.now() - t };
  };
  const cold = await build();
  const warm = await build();
  log(
    `P6: images cold ${secs(cold.ms)} s ${JSON.stringify(cold.images.seconds)}, warm ${secs(warm.ms)} s ${JSON.stringify(warm.images.seconds)}`,
  );
  await installCRDs(kc, sbomscannerCRDs());
  const t = Date.now();
  await installChart(env, cold.images);
  const install = Date.now() - t;
  log(`P6: helm install -> every Pod Ready in ${secs(install)} s`);
  const rounds = QUICK ? 1 : 3;
  // Each round patches a tag of its own (the same image): a real copa run every time.
  const patchOnce = async (name: string): Promise<number> => {
    await retag(env.registryHost, "library/debian", "bookworm-vuln", name);
    const report = await honestReportForImage(`${env.registryHost}/library/debian:${name}`, name, "default");
    const start = Date.now();
    await reportsApi(kc).create(report);
    await waitSucceeded(env, name);
    return Date.now() - start;
  };
  const inCluster: number[] = [];
  for (let i = 0; i < rounds; i++) inCluster.push(await patchOnce(`bookworm-vuln-c${i}`));
  log(`P6: report -> Succeeded in the cluster: ${inCluster.map(secs).join(", ")} s`);
  // The same patches by local processes (controller and worker CLIs, copa on the host's
  // BuildKit) against the same apiserver, NATS and registry, once the chart is gone.
  await helm(env, ["uninstall", "vp", "--namespace", "vuln-patcher", "--wait"]);
  await installAllCRDs(kc);
  const local = await startPipeline(env, 1, 1);
  const onHost: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) onHost.push(await patchOnce(`bookworm-vuln-l${i}`));
  } finally {
    await stopAll(local);
  }
  log(`P6: report -> Succeeded by local processes: ${onHost.map(secs).join(", ")} s`);
  const ratio = median(inCluster) / median(onHost);
  await record({
    id: "P6",
    name: "report -> Succeeded in the cluster (Pods on a real node) vs by local processes, medians",
    floor: "the local pipeline",
    goal: "reported (no goal set)",
    value: +ratio.toFixed(2),
    unit: `x (${secs(median(inCluster))} s vs ${secs(median(onHost))} s)`,
    met: true,
    details: {
      environmentUpSeconds: secs(envUp),
      nodeReadySeconds: secs(env.node!.readyMs),
      imagesColdSeconds: secs(cold.ms),
      imagesCold: cold.images.seconds,
      imagesWarmSeconds: secs(warm.ms),
      imagesWarm: warm.images.seconds,
      helmInstallToReadySeconds: secs(install),
      inClusterSeconds: inCluster.map(secs),
      localSeconds: onHost.map(secs),
    },
  });
}

async function p7(): Promise<void> {
  const d = decisionTimes(QUICK ? 200 : 2000);
  log(
    `P7: decisions against 10,000-character names, warm: max ${d.maxMs.toFixed(2)} ms, median ${d.medianMs.toFixed(3)} ms; the first, cold: ${d.coldFirstMs.toFixed(2)} ms`,
  );
  const h = await healthzUnderLoad(QUICK ? 50 : 300);
  log(
    `P7: /healthz while deciding ${h.decided} reports: max ${h.maxHealthzMs.toFixed(1)} ms over ${h.answers} answers, ${h.failures} failed`,
  );
  await record({
    id: "P7",
    name: `policies ${PATHOLOGICAL.join(" ")} against 10,000-character names: the slowest decision`,
    floor: "a regular expression engine without backtracking (RE2)",
    goal: "< 10 ms per decision; /healthz answers throughout",
    value: +d.maxMs.toFixed(2),
    unit: "ms",
    met: d.maxMs < 10 && h.failures === 0 && h.decided > 0,
    details: { medianMs: +d.medianMs.toFixed(3), coldFirstMs: +d.coldFirstMs.toFixed(2), healthz: h },
  });
}

// ---- P8 several BuildKits: 8 images of 8 repositories on 2 BuildKits vs 1 ----
async function p8(): Promise<void> {
  await using env = await setup({ buildkit: true, buildkits: 2 });
  await installAllCRDs(env.kubeConfig());
  const reports = reportsApi(env.kubeConfig());
  const N = 8;
  const addrs = env.buildkits.map((b) => b.addr);
  const { ownImage } = await import("../test/support/shared.ts");
  const { builderKey, builderOrder } = await import("../src/patch/index.ts");
  const registry = parseImageRef(env.images!.vulnerable).registry;
  const batch = async (label: string, buildkitAddr: string) => {
    const made = [];
    for (let i = 0; i < N; i++) {
      // A repository each (the replica is chosen by repository), a marker layer each (no build cached).
      const repository = `p8/app-${i}`;
      await ownImage(env, repository);
      const tag = `p8-${label}`;
      const digest = await pushVariant(env.registryHost, repository, "bookworm-vuln", tag, `${label}-${i}`);
      made.push((await reportFor(env, `p8-${label}-${i}`, tag, digest, repository)) as any);
    }
    const pipe = await startPipeline(env, 4, 1, buildkitAddr);
    try {
      const t = performance.now();
      await Promise.all(made.map((r) => reports.create(r)));
      await Promise.all(made.map((r) => waitSucceeded(env, r.metadata.name)));
      return performance.now() - t;
    } finally {
      await stopAll(pipe);
    }
  };
  await batch("warm", addrs.join(",")); // the tooling image and apt lists on both
  const one = await batch("one", addrs[0]!);
  const two = await batch("two", addrs.join(","));
  const spread = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const home = builderOrder(addrs, builderKey({ registry, repository: `p8/app-${i}` }))[0]!;
    spread.set(home, (spread.get(home) ?? 0) + 1);
  }
  const speedup = one / two;
  const cores = (await import("node:os")).availableParallelism();
  log(
    `P8: ${N} images with 4 workers: 1 BuildKit ${(one / 1000).toFixed(1)} s, 2 BuildKits ${(two / 1000).toFixed(1)} s (${[...spread.values()].join(" + ")} repositories per replica)`,
  );
  await record({
    id: "P8",
    name: `${N} images of ${N} repositories, 4 workers: 1 BuildKit / 2 BuildKits`,
    floor: `1x; ${cores} cores shared by both BuildKits here`,
    goal: "reported (no goal set)",
    value: +speedup.toFixed(2),
    unit: "x",
    met: true,
    details: { oneMs: Math.round(one), twoMs: Math.round(two), perReplica: [...spread.values()], cores },
  });
}

// ---- P9 library updates: copa's time for a Python image's OS updates, its library updates, both ----
async function p9(): Promise<void> {
  await using env = await setup({ buildkit: true });
  const { pushPythonAppImage, libraryReport } = await import("../src/devenv/library-images.ts");
  const { reportFacts } = await import("../src/decide/index.ts");
  const { planLibraries } = await import("../src/api/index.ts");
  const { patchImage, localExecutor } = await import("../src/patch/index.ts");
  const repo = "p9/python-app";
  await pushPythonAppImage(env.registryHost, `${repo}:base`, env.buildkitAddr);
  const registry = new RegistryClient();
  const executor = localExecutor({ copaPath: goBinary("copa") });
  // A source image of its own per run (a marker layer): no BuildKit cache shared between them.
  const timed = async (label: string, os: boolean, libraries: boolean): Promise<number> => {
    await pushVariant(env.registryHost, repo, "base", label, `p9-${label}-${stamp}`);
    const ref = `${env.registryHost}/${repo}:${label}`;
    const report = await libraryReport(ref, `p9-${label}`, "default", "python");
    const parsed = parseReport(report);
    if (!parsed.ok) throw new Error(parsed.message);
    const facts = reportFacts(parsed.value);
    if (!facts.conversion.ok) throw new Error(facts.conversion.message);
    const conv = facts.conversion.value;
    const r = await patchImage({
      id: `p9-${label}`,
      source: parseImageRef(ref),
      target: { ...parseImageRef(ref), tag: `${label}-patched` },
      os: { type: conv.os.type, version: conv.os.version },
      buildkitAddr: env.buildkitAddr,
      executor,
      registry,
      updates: os ? conv.updates.map((u) => ({ ...u, vulnerabilityIDs: [u.vulnerabilityID] })) : [],
      ...(libraries
        ? { libraryUpdates: planLibraries(facts.libraries, { packageTypes: ["os", "library"] }).updates }
        : {}),
    });
    if (r.kind !== "patched" || r.copaMs === undefined) throw new Error(`P9 ${label}: ${r.kind}`);
    log(
      `P9: ${label}: copa ${(r.copaMs / 1000).toFixed(1)} s, ${r.verification.fixedCVEs.length} CVEs fixed`,
    );
    return r.copaMs;
  };
  await timed("warm", true, true); // the tooling image, apt's lists and PyPI's index once
  const osMs = await timed("os", true, false);
  const libMs = await timed("lib", false, true);
  const bothMs = await timed("both", true, true);
  await record({
    id: "P9",
    name: `a Python image, copa's time: OS updates ${(osMs / 1000).toFixed(1)} s, library updates (urllib3 1.26.4 -> 1.26.19) ${(libMs / 1000).toFixed(1)} s, both in one run`,
    floor: "the package managers' own work (apt-get, pip) on the host's network",
    goal: "reported (no goal set)",
    value: +(bothMs / 1000).toFixed(1),
    unit: "s both",
    met: true,
    details: { osMs: Math.round(osMs), libraryMs: Math.round(libMs), bothMs: Math.round(bothMs) },
  });
}

await mkdir(outDir, { recursive: true });
log(`writing ${outFile}${QUICK ? " (quick mode)" : ""}`);
const t = performance.now();
if (want("P1") || want("P4")) await p1p4();
if (want("P2")) await p2();
if (want("P3") || want("P5")) await p3p5();
if (want("P6")) await p6();
if (want("P7")) await p7();
if (want("P8")) await p8();
if (want("P9")) await p9();
const rows = [
  ["ID", "BENCHMARK", "FLOOR", "GOAL", "RESULT", "MET"],
  ...results.map((r) => [r.id, r.name, r.floor, r.goal, `${r.value} ${r.unit}`, r.met ? "yes" : "NO"]),
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
process.stdout.write(rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ")).join("\n") + "\n");
process.stdout.write(
  `\nresults: ${outFile}\nwall time ${((performance.now() - t) / 60000).toFixed(1)} min\n`,
);
