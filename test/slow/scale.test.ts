// 1,000 reports of realistic size (~150 KB each): the controller's resident memory stays
// bounded (its cache keeps a summary, never a report) and every report reaches Queued.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setup, freePort } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { startCli, metricValue } from "../../test/support/cli.ts";
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

  const port = await freePort();
  const ctl = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--leader-elect=false",
      "--listen",
      `127.0.0.1:${port}`,
      "--concurrency",
      "8",
    ],
    { logDir: env.dir, name: "controller", listenPort: port, env: { NODE_OPTIONS: CONTROLLER_NODE_OPTIONS } },
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
  } finally {
    await ctl.stop();
  }
});
