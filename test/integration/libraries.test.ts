// Language libraries (issue 25) on the real components: a Python image (urllib3 1.26.4
// in Debian's python3) and a Node.js image (minimist 1.2.5 in an app's node_modules),
// each on the environment's old Debian rootfs with OS findings of its own. Their reports
// are the honest OS reports plus the libraries' real CVEs (the fixed versions PyPI and
// npm publish); copa updates OS packages and libraries in one run, pip and node inside
// the images fetching from PyPI and npm. Every CVE is checked in the patched image's
// layers (METADATA, package.json, dpkg status), never taken from copa's word.
// Beside them, a fault: a report whose fix for the Python library is a version PyPI has
// never published, so pip inside copa's run fails; the OS packages of that patch still go
// through (a second copa run without the library) and the finding says why in pip's
// words. The three patches run at once (one pipeline, a worker with three slots).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../src/devenv/tools.ts";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { installPolicy, namespaces, testEnv } from "../support/shared.ts";
import { localPipeline } from "../support/local-pipeline.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import {
  pushNodeAppImage,
  pushPythonAppImage,
  APP_LIBRARIES,
  libraryReport,
} from "../../src/devenv/library-images.ts";
import { testRegistryClient } from "../../src/devenv/registry.ts";
import { waitForLibraries, waitForPhase } from "../support/patchjobs.ts";
import { parseImageRef, type PatchJob } from "../../src/api/index.ts";
import type { Env } from "../../src/devenv/index.ts";
import { reportFault } from "../support/faults.ts";
import { readLibraries } from "../../src/registry/index.ts";

const PY_PATH = APP_LIBRARIES.python.path;
const NODE_PATH = APP_LIBRARIES.node.path;

/** The patch command, as a user runs it. */
async function patchCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(
      process.execPath,
      [join(REPO_ROOT, "dist", "src", "cli", "main.js"), "patch", ...args],
      { cwd: REPO_ROOT, timeout: 300_000 },
    );
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const reasons = (pj: PatchJob) =>
  Object.fromEntries((pj.status?.libraries ?? []).map((f) => [f.cve, f.reason]));

let env: Env;
let NS: string;
let pipeline: AsyncDisposable | undefined;
let py: string;
let node: string;
let nodeReport: Record<string, unknown>;
let reportFile: string;
let cliRun: ReturnType<typeof patchCli> | undefined;

before(async () => {
  env = await testEnv();
  const kc = env.kubeConfig();
  NS = (await namespaces(env, "libs")).libs!;
  const reg = env.registryHost;
  py = `${reg}/${NS}/python-app:1`;
  node = `${reg}/${NS}/node-app:1`;
  const fault = `${reg}/${NS}/python-fault:1`;
  await Promise.all([
    pushPythonAppImage(reg, `${NS}/python-app:1`, env.buildkitAddr),
    pushPythonAppImage(reg, `${NS}/python-fault:1`, env.buildkitAddr),
    pushNodeAppImage(reg, `${NS}/node-app:1`),
  ]);
  await installPolicy(env, NS, { spec: { packageTypes: ["os", "library"], libraryPatchLevel: "patch" } });
  pipeline = await localPipeline(env, NS, ["--concurrency", "3"]);
  nodeReport = await libraryReport(node, "node-app", NS, "node");
  for (const r of [
    await libraryReport(py, "python-app", NS, "python"),
    structuredClone(nodeReport),
    // The injected fault: the report's fixed version is one PyPI has never published.
    await libraryReport(fault, "python-fault", NS, "python", [["CVE-2021-33503", ["1.26.999"]]]),
  ])
    await reportsApi(kc).create(r);
  // The patch command on the Node.js image at the same time (its library alone, its own tag).
  reportFile = join(env.dir, `${NS}-node-report.json`);
  await writeFile(reportFile, JSON.stringify(nodeReport));
  cliRun = patchCli([
    ...["-i", node, "-r", reportFile, "-a", env.buildkitAddr, "-t", "1-cli"],
    ...["--pkg-types", "library", "--json"],
  ]);
});

after(async () => {
  await pipeline?.[Symbol.asyncDispose]();
  await env?.stop();
});

test("libraries - a Python and a Node.js image patched for real: OS and library CVEs fixed in one run and checked in the image; beyond the policy's level listed; again, a no-op", async () => {
  const kc = env.kubeConfig();
  const api = kc.makeApiClient(CustomObjectsApi);
  await Promise.all(
    ["python-app", "node-app"].map((n) => waitForPhase(kc, NS, n, ["Succeeded", "Failed", "NoOp"], 600_000)),
  );
  // Each finding listed (urllib3's five CVEs, minimist's one), whichever write came first.
  const [pyJob, nodeJob] = await Promise.all([
    waitForLibraries(kc, NS, "python-app", 5),
    waitForLibraries(kc, NS, "node-app", 1),
  ]);
  for (const pj of [pyJob!, nodeJob!]) {
    assert.equal(pj.status?.phase, "Succeeded", `${pj.metadata.name}: ${pj.status?.message}`);
    assert.ok((pj.spec.updates?.length ?? 0) > 0, "the report has OS findings too");
    const osCVEs = pj.spec.updates!.flatMap((u) => u.vulnerabilityIDs ?? []);
    assert.ok(
      osCVEs.some((c) => pj.status?.fixedCVEs?.includes(c)),
      `${pj.metadata.name}: OS CVEs fixed in the same run (${pj.status?.fixedCVEs?.length} fixed)`,
    );
  }
  // Python: the patch-level fixes (up to 1.26.19) in, the 2.x one listed with why.
  assert.deepEqual(reasons(pyJob!), {
    "CVE-2021-33503": "Fixed",
    "CVE-2023-43804": "Fixed",
    "CVE-2023-45803": "Fixed",
    "CVE-2024-37891": "Fixed",
    "CVE-2025-50181": "BeyondPatchLevel",
  });
  for (const c of ["CVE-2021-33503", "CVE-2024-37891"]) assert.ok(pyJob!.status?.fixedCVEs?.includes(c), c);
  assert.ok(!pyJob!.status?.fixedCVEs?.includes("CVE-2025-50181"));
  assert.deepEqual(reasons(nodeJob!), { "CVE-2021-44906": "Fixed" });
  assert.ok(nodeJob!.status?.fixedCVEs?.includes("CVE-2021-44906"));
  // The patched images' own files, read from their layers.
  const registry = testRegistryClient();
  const versionsIn = async (pj: PatchJob, loc: { type: string; name: string; path: string }) => {
    const ref = { ...parseImageRef(pj.status!.patchedImage!.reference!), tag: undefined };
    const m = await registry.manifestFor({ ...ref, digest: pj.status!.patchedImage!.digest! }, "linux/amd64");
    return (await readLibraries(registry, ref, m!.manifest.layers, [loc]))[0];
  };
  assert.deepEqual(await versionsIn(pyJob!, { type: "python-pkg", name: "urllib3", path: PY_PATH }), [
    "1.26.19",
  ]);
  assert.deepEqual(await versionsIn(nodeJob!, { type: "node-pkg", name: "minimist", path: NODE_PATH }), [
    "1.2.6",
  ]);

  // The same patch asked for again (by hand): the target already holds it.
  const again = structuredClone(pyJob!.spec);
  delete again.reportRef;
  delete again.policyRef;
  delete again.findingsHash;
  await api.createNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: "patchjobs",
    namespace: NS,
    body: {
      apiVersion: "vulnpatcher.io/v1alpha1",
      kind: "PatchJob",
      metadata: { name: "python-again" },
      spec: { ...again, source: "manual" },
    },
  });
  const noop = await waitForPhase(kc, NS, "python-again", ["Succeeded", "Failed", "NoOp"], 300_000);
  assert.equal(noop.status?.phase, "NoOp", noop.status?.message);
  assert.equal(noop.status?.reason, "AlreadyPatched");
  assert.equal(noop.status?.patchedImage?.digest, pyJob!.status?.patchedImage?.digest);

  // The patch command, like kubescape patch: the Node.js report's library alone.
  // (It was started with the others, in before().)
  const bad = await patchCli(["-i", node, "-r", reportFile, "--pkg-types", "library,go"]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--pkg-types: "go" is not os or library/);
  const cli = await cliRun!;
  assert.equal(cli.code, 0, cli.stderr);
  const summary = JSON.parse(cli.stdout) as {
    result: string;
    libraries: Array<{ cve: string; reason: string }>;
  };
  assert.equal(summary.result, "patched");
  assert.deepEqual(
    summary.libraries.map((f) => [f.cve, f.reason]),
    [["CVE-2021-44906", "Fixed"]],
  );
});

test("libraries - copa's library update fails (a fix PyPI does not publish): the OS packages are patched alone, the library NotPatchable with pip's words", async (t) => {
  const pj = await waitForPhase(
    env.kubeConfig(),
    NS,
    "python-fault",
    ["Succeeded", "Failed", "NoOp"],
    600_000,
  );
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  const osCVEs = pj.spec.updates!.flatMap((u) => u.vulnerabilityIDs ?? []);
  assert.ok(
    osCVEs.some((c) => pj.status?.fixedCVEs?.includes(c)),
    "the OS CVEs are fixed",
  );
  const lib = pj.status?.libraries?.find((f) => f.cve === "CVE-2021-33503");
  assert.equal(lib?.reason, "NotPatchable");
  assert.match(
    lib!.message,
    /copa could not update it: ERROR: No matching distribution found for urllib3==1\.26\.999/,
  );
  assert.ok(!pj.status?.fixedCVEs?.includes("CVE-2021-33503"));
  reportFault(t, {
    fault: "library-update-fails",
    injected: "a report whose urllib3 fix (1.26.999) PyPI does not publish: pip inside copa's run fails",
    expected: "the OS packages patched without the library; the finding NotPatchable with pip's words",
    observed: `${pj.status?.phase}, ${pj.status?.fixedCVEs?.length} CVEs fixed; ${lib?.reason}: ${lib?.message}`,
  });
});
