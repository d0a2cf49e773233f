// The full pipeline, as it runs in a cluster: the controller and a worker as separate
// processes (the compiled CLI), a VulnerabilityReport built from real data, NATS
// JetStream, copa on BuildKit, the registry. Then a rescan that changes nothing must not
// patch again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setup, freePort } from "../env/index.ts";
import { installAllCRDs } from "../env/crds.ts";
import { honestReportForImage } from "../env/honest-report.ts";
import { reportsApi } from "../env/kube.ts";
import { startCli, metricValue, localWorkerArgs } from "../env/cli.ts";
import { waitForPhase, getPatchJob } from "../env/patchjobs.ts";
import { streamState } from "../env/stream.ts";
import { parseImageRef } from "../../src/api/imageref.ts";
import { RegistryClient } from "../../src/registry/client.ts";
import { setTimeout as sleep } from "node:timers/promises";

async function revisions(registryData: string): Promise<number> {
  return (
    await readdir(
      join(registryData, "docker/registry/v2/repositories/library/debian/_manifests/revisions/sha256"),
    ).catch(() => [])
  ).length;
}

test("pipeline - report -> controller -> NATS -> worker -> copa on BuildKit -> registry -> Succeeded; a rescan does not patch again", async (t) => {
  await using env = await setup({ buildkit: true });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  const [cport, wport] = [await freePort(), await freePort()];
  const controller = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
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
    const report = await honestReportForImage(env.images!.vulnerable, "bookworm", "default");
    const findings = (report.report as { results: Array<{ vulnerabilities: Array<{ cve: string }> }> })
      .results[0]!.vulnerabilities;
    assert.ok(findings.length > 0, "the image has real, fixable findings");
    const reports = reportsApi(kc);
    const t0 = Date.now();
    await reports.create(report);

    const pj = await waitForPhase(kc, "default", "bookworm", ["Succeeded", "Failed", "NoOp"], 600_000);
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
    const revs0 = await revisions(env.registry!.dataDir);
    const patches0 = metricValue(await worker.metrics(), "vuln_patcher_patches_total");
    for (let i = 0; i < 3; i++) {
      const cur = await reports.get("default", "bookworm");
      cur.metadata.labels["sbomscanner.kubewarden.io/scanjob-uid"] = `rescan-${i}`;
      await reports.replace(cur);
      await sleep(500);
    }
    await sleep(3000);
    const after = await getPatchJob(kc, "default", "bookworm");
    assert.equal(after.metadata.generation, pj.metadata.generation, "no new generation");
    assert.equal(after.status?.phase, "Succeeded");
    assert.equal((await streamState(env.natsURL)).lastSeq, stream0.lastSeq, "no new message");
    assert.equal(await revisions(env.registry!.dataDir), revs0, "no new image");
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
