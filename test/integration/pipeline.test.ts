// The full pipeline, as it runs in a cluster: the controller and a worker as separate
// processes (the compiled CLI), a VulnerabilityReport built from real data, NATS
// JetStream, copa on BuildKit, the registry. Then a rescan that changes nothing must not
// patch again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { freePort } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { installPolicy, namespaces, ownImage, testEnv } from "../support/shared.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { startCli, metricValue, localWorkerArgs } from "../support/cli.ts";
import { waitForPhase, getPatchJob } from "../support/patchjobs.ts";
import { streamState } from "../support/stream.ts";
import { parseImageRef } from "../../src/api/index.ts";
import { RegistryClient } from "../../src/registry/index.ts";

async function revisions(registryData: string, repository: string): Promise<number> {
  return (
    await readdir(
      join(registryData, "docker/registry/v2/repositories", repository, "_manifests/revisions/sha256"),
    ).catch(() => [])
  ).length;
}

test("pipeline - report -> controller -> NATS -> worker -> copa on BuildKit -> registry -> Succeeded; a rescan does not patch again", async (t) => {
  await using env = await testEnv();
  const kc = env.kubeConfig();
  const ns = (await namespaces(env, "pipeline")).pipeline!;
  await installPolicy(env, ns);
  const repo = `${ns}/debian`;
  const image = await ownImage(env, repo);
  const [cport, wport] = [await freePort(), await freePort()];
  const controller = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--namespaces",
      ns,
      "--policy-namespace",
      ns,
      "--leader-election-namespace",
      ns,
      "--listen",
      `127.0.0.1:${cport}`,
      "--lease-duration",
      "6s",
    ],
    { logDir: env.dir, name: "controller", listenPort: cport },
  );
  const worker = await startCli([...localWorkerArgs(env), "--listen", `127.0.0.1:${wport}`], {
    logDir: env.dir,
    name: "worker",
    listenPort: wport,
  });
  try {
    const report = await honestReportForImage(image.ref, "bookworm", ns);
    const findings = (report.report as { results: Array<{ vulnerabilities: Array<{ cve: string }> }> })
      .results[0]!.vulnerabilities;
    assert.ok(findings.length > 0, "the image has real, fixable findings");
    const reports = reportsApi(kc);
    const t0 = Date.now();
    await reports.create(report);

    const pj = await waitForPhase(kc, ns, "bookworm", ["Succeeded", "Failed", "NoOp"], 600_000);
    // The same patch in Pods on a real node: test/cluster prints its time too.
    t.diagnostic(`report -> Succeeded, local processes: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
    assert.equal(pj.spec.source, "report");
    const tag = await new RegistryClient().manifestFor(parseImageRef(pj.status!.patchedImage!.reference!));
    assert.equal(
      tag?.digest,
      pj.status!.patchedImage!.digest,
      "the digest recorded is the one the registry serves",
    );
    assert.deepEqual(pj.status?.fixedCVEs, [...new Set(findings.map((f) => f.cve))].sort());
    assert.equal(pj.status?.vulnerabilities?.after?.fixed, findings.length);
    assert.equal(pj.status?.vulnerabilities?.after?.fixable, 0);

    // A rescan: same findings, new scan id label, new resourceVersion.
    const stream0 = await streamState(env.natsURL);
    const revs0 = await revisions(env.registry!.dataDir, repo);
    const patches0 = metricValue(await worker.metrics(), "vuln_patcher_patches_total");
    // Each rescan is reconciled (the controller's report reconcile counter moves), and
    // leads to nothing: shown by the counters, the stream's sequence and the registry.
    const reconciled = async () =>
      metricValue(await controller.metrics(), "vuln_patcher_reconcile_total", 'kind="report"');
    for (let i = 0; i < 3; i++) {
      const before = await reconciled();
      const cur = await reports.get(ns, "bookworm");
      cur.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = `rescan-${i}`;
      await reports.replace(cur);
      await waitFor(`rescan ${i} reconciled`, async () => (await reconciled()) > before, 30_000, 50);
    }
    await waitFor(
      "the controller's queues empty",
      async () => metricValue(await controller.metrics(), "vuln_patcher_workqueue_depth") === 0,
      30_000,
      50,
    );
    const after = await getPatchJob(kc, ns, "bookworm");
    assert.equal(after.metadata.generation, pj.metadata.generation, "no new generation");
    assert.equal(after.status?.phase, "Succeeded");
    assert.equal((await streamState(env.natsURL)).lastSeq, stream0.lastSeq, "no new message");
    assert.equal(await revisions(env.registry!.dataDir, repo), revs0, "no new image");
    assert.equal(
      metricValue(await worker.metrics(), "vuln_patcher_patches_total"),
      patches0,
      "the worker did nothing",
    );
  } finally {
    await worker.stop();
    await controller.stop();
  }
});
