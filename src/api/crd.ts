// Loads the CRDs that ship in the chart (the single source of truth) so that the
// CLI, the dev environment and the tests install exactly what users install.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

/** The repository (or image) root: the nearest ancestor holding charts/vuln-patcher. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (
      existsSync(join(dir, "charts", "vuln-patcher", "Chart.yaml")) ||
      existsSync(join(dir, "charts", "vuln-patcher", "crds"))
    )
      return dir;
    const up = dirname(dir);
    if (up === dir)
      throw new Error("cannot find charts/vuln-patcher above " + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export const PATCHJOB_CRD_FILE = "patchjobs.vulnpatcher.io.yaml";
export const PATCHPOLICY_CRD_FILE = "patchpolicies.vulnpatcher.io.yaml";
export const TENANTGRANT_CRD_FILE = "tenantgrants.vulnpatcher.io.yaml";

export interface CRDObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    names: { plural: string; kind: string };
    versions: Array<{ name: string; schema: { openAPIV3Schema: SchemaNode } }>;
  };
}

export interface SchemaNode {
  type?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  required?: string[];
  enum?: unknown[];
  [k: string]: unknown;
}

export function loadCRDFile(path: string): CRDObject[] {
  return (parseAllDocuments(readFileSync(path, "utf8")).map((d) => d.toJS()) as CRDObject[]).filter(
    (o) => o?.kind === "CustomResourceDefinition",
  );
}

export function patchJobCRD(): CRDObject {
  const [crd] = loadCRDFile(join(projectRoot(), "charts", "vuln-patcher", "crds", PATCHJOB_CRD_FILE));
  if (!crd) throw new Error(`no CRD in ${PATCHJOB_CRD_FILE}`);
  return crd;
}

export function patchPolicyCRD(): CRDObject {
  const [crd] = loadCRDFile(join(projectRoot(), "charts", "vuln-patcher", "crds", PATCHPOLICY_CRD_FILE));
  if (!crd) throw new Error(`no CRD in ${PATCHPOLICY_CRD_FILE}`);
  return crd;
}

/** The PatchJob CRD's spec schema: what decisions check every derived spec against. */
export function patchJobSpecSchema(): SchemaNode {
  const spec = patchJobCRD().spec.versions[0]?.schema.openAPIV3Schema.properties?.spec;
  if (!spec) throw new Error(`${PATCHJOB_CRD_FILE} has no spec schema`);
  return spec;
}

export function tenantGrantCRD(): CRDObject {
  const [crd] = loadCRDFile(join(projectRoot(), "charts", "vuln-patcher", "crds", TENANTGRANT_CRD_FILE));
  if (!crd) throw new Error(`no CRD in ${TENANTGRANT_CRD_FILE}`);
  return crd;
}

/** Every CRD the chart ships. */
export function ourCRDs(): CRDObject[] {
  return [patchJobCRD(), patchPolicyCRD(), tenantGrantCRD()];
}
