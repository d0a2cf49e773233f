// Language libraries (issue 25), a fault on the real components: the report's fix for a
// Python library is a version PyPI has never published, so pip inside copa's run fails.
// The OS packages of the same patch still go through (a second copa run without the
// libraries), and the finding says why in pip's own words.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { namespaces, testEnv } from "../support/shared.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { PYTHON_APP, pushPythonAppImage, withLibraries } from "../../src/devenv/library-images.ts";
import { waitForPhase } from "../support/patchjobs.ts";
import { startCli, localWorkerArgs, type CliProcess } from "../support/cli.ts";
import { defaultPolicy, POLICY_PLURAL } from "../../src/api/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController } from "../../src/controller/index.ts";
import { reportFault } from "../support/faults.ts";

const PY_PATH = `${PYTHON_APP.sitePackages}/urllib3-${PYTHON_APP.version}.dist-info/METADATA`;

test("libraries - copa's library update fails (a fix PyPI does not publish): the OS packages are patched alone, the library NotPatchable with pip's words", async (t) => {
  await using env = await testEnv();
  const kc = env.kubeConfig();
  const NS = (await namespaces(env, "libs-fault"))["libs-fault"]!;
  const reg = env.registryHost;
  const py = `${reg}/${NS}/python-app:1`;
  await pushPythonAppImage(reg, `${NS}/python-app:1`, env.buildkitAddr);
  const api = kc.makeApiClient(CustomObjectsApi);
  const policy = defaultPolicy(NS);
  await api.createNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: POLICY_PLURAL,
    namespace: NS,
    body: { ...policy, spec: { ...policy.spec, packageTypes: ["os", "library"] } },
  });
  const nc = await connectNats({ url: env.natsURL, name: "libraries-fault-test" });
  const ctl = await startController({ kc, nc, namespaces: [NS], policyNamespace: NS });
  let worker: CliProcess | undefined;
  try {
    worker = await startCli([...localWorkerArgs(env), "--listen", "127.0.0.1:0"], {
      logDir: env.dir,
      name: `${NS}-worker`,
    });
    // The injected fault: the report's fixed version is one PyPI has never published.
    await reportsApi(kc).create(
      await withLibraries(
        await honestReportForImage(py, "python-app", NS),
        py,
        "python-pkg",
        "urllib3",
        "1.26.4",
        PY_PATH,
        [["CVE-2021-33503", ["1.26.999"]]],
      ),
    );
    const pj = await waitForPhase(kc, NS, "python-app", ["Succeeded", "Failed", "NoOp"], 600_000);
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
  } finally {
    await worker?.stop();
    await ctl.stop();
    await nc.close();
  }
});
