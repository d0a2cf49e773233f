// End of life (issue 25) on the real components: an image that says it is Debian 10
// (buster). copa's tooling image for it (debian:10-slim) runs apt-get update against
// deb.debian.org, which no longer serves buster's suites (a real 404 from the real
// mirror). SIMULATION, named: a buster rootfs cannot be made here (its archive,
// archive.debian.org, is not reachable), so both images are this environment's bookworm
// rootfs with buster's os-release, debian_version and sources.list on top. What apt
// answers and what copa does with it are real.
// Without a policy setting the attempt is made and ends EndOfLife at once (no retries);
// a policy with skipEndOfLife ends it before any attempt.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { namespaces, ownImage, testEnv } from "../support/shared.ts";
import { pushVariant } from "../../src/devenv/variants.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { waitForPhase } from "../support/patchjobs.ts";
import { startCli, localWorkerArgs, type CliProcess } from "../support/cli.ts";
import { defaultPolicy, POLICY_PLURAL } from "../../src/api/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController } from "../../src/controller/index.ts";
import { reportFault } from "../support/faults.ts";

const BUSTER = {
  "etc/debian_version": "10.13\n",
  "etc/os-release": [
    'PRETTY_NAME="Debian GNU/Linux 10 (buster)"',
    'NAME="Debian GNU/Linux"',
    'VERSION_ID="10"',
    'VERSION="10 (buster)"',
    "VERSION_CODENAME=buster",
    "ID=debian",
    "",
  ].join("\n"),
  "etc/apt/sources.list": "deb http://deb.debian.org/debian buster main\n",
};

test("eol - a Debian 10 image: the attempt ends EndOfLife with what to do, no retries; with skipEndOfLife, before any attempt", async (t) => {
  await using env = await testEnv();
  const kc = env.kubeConfig();
  const ns = await namespaces(env, "eol", "eol-skip");
  const [TRY, SKIP] = [ns.eol!, ns["eol-skip"]!];
  // copa's Debian tooling image for "10.13" is debian:10-slim, through the registry mirrors.
  for (const repo of ["library/debian", "project-copacetic/copacetic/debian"])
    await pushVariant(env.registryHost, repo, "12-slim", "10-slim", "buster", {
      "etc/apt/sources.list": BUSTER["etc/apt/sources.list"],
    });
  const images: Record<string, string> = {};
  for (const n of [TRY, SKIP]) {
    await ownImage(env, `${n}/debian`);
    await pushVariant(env.registryHost, `${n}/debian`, "bookworm-vuln", "buster", "buster", BUSTER);
    images[n] = `${env.registryHost}/${n}/debian:buster`;
  }
  const p = (n: string, skip: boolean) => {
    const d = defaultPolicy(n);
    return { ...d, spec: { ...d.spec, ...(skip ? { skipEndOfLife: true } : {}) } };
  };
  const api = kc.makeApiClient(CustomObjectsApi);
  for (const [n, skip] of [
    [TRY, false],
    [SKIP, true],
  ] as const)
    await api.createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: POLICY_PLURAL,
      namespace: n,
      body: p(n, skip),
    });
  const nc = await connectNats({ url: env.natsURL, name: "eol-test" });
  const ctl = await startController({ kc, nc, namespaces: [TRY, SKIP], policyNamespace: TRY });
  let worker: CliProcess | undefined;
  try {
    worker = await startCli([...localWorkerArgs(env), "--listen", "127.0.0.1:0", "--max-deliver", "3"], {
      logDir: env.dir,
      name: `${TRY}-worker`,
    });
    const report = await honestReportForImage(images[TRY]!, "buster", TRY);
    assert.match(JSON.stringify(report), /distro=debian-10\.13/, "the report says Debian 10.13");
    await reportsApi(kc).create(report);
    const pj = await waitForPhase(kc, TRY, "buster", ["Succeeded", "Failed", "NoOp"], 300_000);
    assert.equal(pj.status?.phase, "Failed", pj.status?.message);
    assert.equal(pj.status?.reason, "EndOfLife");
    assert.match(
      pj.status!.message!,
      /past its end of life: the mirror no longer serves 'http:\/\/deb\.debian\.org\/debian buster'.*Rebuild the image on a supported release/,
    );
    assert.equal(pj.status?.attempts, 1, "no retries: no package will ever come");

    await reportsApi(kc).create(await honestReportForImage(images[SKIP]!, "buster", SKIP));
    const skipped = await waitForPhase(kc, SKIP, "buster", ["Succeeded", "Failed", "NoOp"], 60_000);
    assert.equal(skipped.status?.reason, "EndOfLife");
    assert.match(
      skipped.status!.message!,
      /debian 10 \(buster\) is past its end of life \(2024-06-30\).*Rebuild the image on Debian 12/,
    );
    assert.equal(skipped.status?.attempts ?? 0, 0, "never attempted");
    assert.equal(
      skipped.status?.conditions?.find((c) => c.type === "Queued")?.status ?? "absent",
      "absent",
      "never queued",
    );
    reportFault(t, {
      fault: "end-of-life-release",
      injected: "a report of an image saying Debian 10 (buster): deb.debian.org answers 404 for its suites",
      expected: "Failed EndOfLife after one attempt, with what to do; with skipEndOfLife, before any attempt",
      observed: `attempt: ${pj.status?.reason} after ${pj.status?.attempts} attempt(s): ${pj.status?.message}; skipped: ${skipped.status?.reason}, ${skipped.status?.attempts ?? 0} attempts`,
    });
  } finally {
    await worker?.stop();
    await ctl.stop();
    await nc.close();
  }
});
