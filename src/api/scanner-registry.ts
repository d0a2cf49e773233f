// sbomscanner's Registry (sbomscanner.kubewarden.io/v1alpha1): what vuln-patcher reads of
// it. A Registry names a registry host (spec.uri) and, in spec.authSecret, the
// dockerconfigjson Secret of its namespace with the credentials to read it: the tenant's
// own credentials for that registry.
import type { ObjectMeta } from "./report.ts";

export const SCANNER_GROUP = "sbomscanner.kubewarden.io";
export const SCANNER_VERSION = "v1alpha1";
export const SCANNER_REGISTRY_PLURAL = "registries";

export interface ScannerRegistry {
  metadata: ObjectMeta & { name: string };
  spec?: { uri?: string; authSecret?: string; insecure?: boolean };
}

export const SCANJOB_PLURAL = "scanjobs";

/** sbomscanner's ScanJob: scan one Registry of the same namespace (optionally some repositories of it). */
export interface ScanJob {
  apiVersion: "sbomscanner.kubewarden.io/v1alpha1";
  kind: "ScanJob";
  metadata: ObjectMeta & { name: string; namespace: string };
  spec: { registry: string; repositories?: Array<{ name: string }> };
}
