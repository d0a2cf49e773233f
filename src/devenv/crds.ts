// The CRDs the environment installs: ours from the chart, and sbomscanner's test CRD.
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { ignoreConflict, installCRDs } from "../kube/index.ts";
import { defaultPolicy, loadCRDFile, ourCRDs, POLICY_PLURAL } from "../api/index.ts";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { REPO_ROOT } from "./tools.ts";

/**
 * sbomscanner's VulnerabilityReport test CRD (a real install serves the kind from its own
 * API server), a minimal Registry CRD of our own (tenants' credentials), its ScanJob, and
 * a stand-in for its WorkloadScanReport (which workload containers run which image).
 */
export function sbomscannerCRDs() {
  const dir = join(REPO_ROOT, "src", "devenv", "sbomscanner");
  return [
    ...loadCRDFile(join(dir, "storage.sbomscanner.kubewarden.io_vulnerabilityreports.yaml")),
    ...loadCRDFile(join(dir, "registries.sbomscanner.kubewarden.io.yaml")),
    ...loadCRDFile(join(dir, "scanjobs.sbomscanner.kubewarden.io.yaml")),
    ...loadCRDFile(join(dir, "workloadscanreports.storage.sbomscanner.kubewarden.io.yaml")),
  ];
}

/**
 * Our CRDs from the chart, plus the sbomscanner test CRD; and, as the chart does, the
 * default PatchPolicy (patch every fixable report) in the controller's namespace,
 * "default" here (pass `defaultPolicy: false` to start with no policy).
 */
export async function installAllCRDs(
  kc: KubeConfig,
  o: { defaultPolicy?: boolean; namespace?: string } = {},
): Promise<void> {
  await installCRDs(kc, [...ourCRDs(), ...sbomscannerCRDs()]);
  if (o.defaultPolicy === false) return;
  const p = defaultPolicy(o.namespace ?? "default");
  await ignoreConflict(
    kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: POLICY_PLURAL,
      namespace: p.metadata.namespace!,
      body: p,
    }),
  );
}
