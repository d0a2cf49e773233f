// 1,000 reports of realistic size (~150 KB each): the controller's resident memory stays
// bounded (its cache keeps a summary, never a report) and every report reaches Queued.
// Then idle costs nothing: over two resync periods, at most one LIST per informer and
// period (counted by the apiserver), the reports relisted as metadata with none got in
// full, nothing logged above info, no PatchPolicy status write.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { setup, type Env } from "../../src/devenv/index.ts";
import { type PatchPolicy, POLICY_PLURAL } from "../../src/api/index.ts";
import { rawGet } from "../../src/kube/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { startControllerCli, metricValue } from "../../test/support/cli.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { createNamespace, reportsApi } from "../../src/devenv/kube.ts";
import { messagesIn } from "../../test/support/stream.ts";
import { makeReport } from "../../test/fixtures/make-report.ts";

// 1,000 x 150 KB is 150 MB of reports: a cache that kept them would be far past the limit
// (bench P3 runs 10,000). SCALE_REPORTS raises it.
const N = Number(process.env.SCALE_REPORTS ?? 1000);
const SIZE = 150_000;
const RSS_LIMIT_MB = 300;
/**
 * The heap settings the Helm chart gives the controller (values.yaml controller.nodeOptions).
 * Without a limit, V8 on a 24 GB machine lets garbage from the list pages pile up to
 * several hundred MB before it collects; the live set stays under 100 MB.
 */
export const CONTROLLER_NODE_OPTIONS = "--max-old-space-size=192 --max-semi-space-size=8";

function peakRssMB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

test(`scale - ${N} reports of ~150 KB: bounded controller memory, all Queued`, async () => {
  await using env = await setup({ registry: false, controllerManager: false });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  const ns = "scale";
  await createNamespace(kc, ns);
  const reports = reportsApi(kc);
  const template = makeReport({ name: "template", namespace: ns, sizeBytes: SIZE });
  const size = JSON.stringify(template).length;
  const t0 = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < N) {
        const i = next++;
        const r = structuredClone(template);
        r.metadata.name = `report-${i}`;
        r.imageMetadata.tag = `v${i}`;
        r.imageMetadata.digest = "sha256:" + i.toString(16).padStart(64, "0");
        await reports.create(r);
      }
    }),
  );
  process.stderr.write(`# created ${N} reports of ${Math.round(size / 1024)} KB in ${Date.now() - t0} ms\n`);

  const ctl = await startControllerCli(
    env,
    // Short enough to see two resyncs while idle below (production: 5m).
    ["--concurrency", "8", "--resync", `${RESYNC_S}s`],
    { env: { NODE_OPTIONS: CONTROLLER_NODE_OPTIONS } },
  );
  try {
    const t1 = Date.now();
    await waitFor(
      `${N} PatchJobs Queued`,
      async () =>
        metricValue(await ctl.metrics(), "vuln_patcher_patchjobs", 'phase="Queued"') === N || undefined,
      900_000,
      1000,
    );
    const rss = peakRssMB(ctl.pid);
    process.stderr.write(
      `# ${N} reports -> Queued in ${Date.now() - t1} ms; controller peak RSS ${rss.toFixed(0)} MB\n`,
    );
    assert.ok(rss < RSS_LIMIT_MB, `controller peak RSS ${rss.toFixed(0)} MB`);
    assert.equal(await messagesIn(env.natsURL, ns), N);

    // Idle: nothing changes for a little over two resync periods.
    // First what follows the burst: the work queues empty, the policy's status written.
    await waitFor(
      "empty work queues and the policy's status",
      async () =>
        (metricValue(await ctl.metrics(), "vuln_patcher_workqueue_depth") === 0 &&
          (await readPolicy(env)).status?.matchedReports === N &&
          // Its PatchJobs counted too: the status loop may have written matchedReports
          // while the PatchJob cache still caught up (seen with another file beside it).
          (await readPolicy(env)).status?.patchJobsCreated === N) ||
        undefined,
      120_000,
      500,
    );
    const policy = await readPolicy(env);
    const logBefore = readFileSync(ctl.logFile, "utf8").length;
    const listsBefore = await apiserverLists(env);
    const ctlBefore = await ctl.metrics();
    await sleepFor(IDLE_S * 1000); // the measured period itself, not a wait for something
    const lists = diff(await apiserverLists(env), listsBefore);
    const ctlAfter = await ctl.metrics();
    const warnings = readFileSync(ctl.logFile, "utf8")
      .slice(logBefore)
      .split("\n")
      .filter((l) => /"level":(40|50|60)/.test(l));
    const fetched =
      metricValue(ctlAfter, "vuln_patcher_informer_relist_fetched_total") -
      metricValue(ctlBefore, "vuln_patcher_informer_relist_fetched_total");
    const metadataLists =
      metricValue(ctlAfter, "vuln_patcher_informer_lists_total", 'kind="metadata"') -
      metricValue(ctlBefore, "vuln_patcher_informer_lists_total", 'kind="metadata"');
    process.stderr.write(
      `# idle ${IDLE_S} s (resync ${RESYNC_S} s): LISTs by resource ${JSON.stringify(lists)}; metadata relists ${metadataLists}, objects fetched ${fetched}; ${warnings.length} warnings\n`,
    );
    for (const [resource, n] of Object.entries(lists))
      assert.ok(n <= 3, `${resource}: ${n} LISTs in ${IDLE_S} s idle (resync ${RESYNC_S} s)`);
    assert.ok((lists.vulnerabilityreports ?? 0) >= 1, "the reports were relisted");
    assert.ok(metadataLists >= 1, "as metadata");
    assert.equal(fetched, 0, "no unchanged report got in full");
    assert.deepEqual(warnings, [], "nothing above info while idle");
    assert.equal(
      (await readPolicy(env)).metadata.resourceVersion,
      policy.metadata.resourceVersion,
      "no PatchPolicy status write",
    );
  } finally {
    await ctl.stop();
  }
});

const RESYNC_S = 30;
const IDLE_S = 70;
const sleepFor = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readPolicy(env: Env): Promise<PatchPolicy> {
  return (await env.kubeConfig().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: POLICY_PLURAL,
    namespace: "default",
    name: "default",
  })) as PatchPolicy;
}

/** LIST requests the apiserver has served, by resource (its own metrics). */
async function apiserverLists(env: Env): Promise<Record<string, number>> {
  const { body } = await rawGet(env.kubeConfig(), "/metrics", { accept: "text/plain" });
  const out: Record<string, number> = {};
  for (const line of body.split("\n")) {
    if (!line.startsWith("apiserver_request_total{") || !line.includes('verb="LIST"')) continue;
    const resource = /resource="([^"]*)"/.exec(line)?.[1] ?? "";
    if (
      !["vulnerabilityreports", "patchjobs", "patchpolicies", "tenantgrants", "namespaces"].includes(resource)
    )
      continue;
    out[resource] = (out[resource] ?? 0) + Number(line.split(" ").pop());
  }
  return out;
}

function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}
