import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { installCRDs } from "../../src/kube/crds.ts";
import { loadCRDFile, patchJobCRD } from "../../src/api/crd.ts";
import { REPO_ROOT } from "./tools.ts";

/** sbomscanner's VulnerabilityReport test CRD (a real install serves the kind from its own API server). */
export function sbomscannerCRDs() {
  const dir = join(REPO_ROOT, "test", "fixtures", "sbomscanner");
  return [...loadCRDFile(join(dir, "storage.sbomscanner.kubewarden.io_vulnerabilityreports.yaml"))];
}

/** Our PatchJob CRD from the chart, plus the sbomscanner test CRD. */
export async function installAllCRDs(kc: KubeConfig): Promise<void> {
  await installCRDs(kc, [patchJobCRD(), ...sbomscannerCRDs()]);
}
