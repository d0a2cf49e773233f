// TenantGrant (vulnpatcher.io/v1alpha1, cluster-scoped): TypeScript mirror of
// charts/vuln-patcher/crds/tenantgrants.vulnpatcher.io.yaml. What the grants mean is in
// src/decide/tenancy.ts.
import type { ObjectMeta } from "./report.ts";
import type { LabelSelector } from "./patchpolicy.ts";

export const GRANT_PLURAL = "tenantgrants";
export const GRANT_KIND = "TenantGrant";

export interface TenantGrantSpec {
  namespaces?: string[];
  namespaceSelector?: LabelSelector;
  /** RE2 patterns of `registry/repository`: images beyond those the namespace's reports name. */
  sources?: string[];
  /** RE2 patterns of `registry/repository`: where patches may go beyond their source repository. */
  targets?: string[];
  /** May use the workers' own registry credentials. */
  globalCredentials?: boolean;
}

export interface TenantGrant {
  apiVersion: "vulnpatcher.io/v1alpha1";
  kind: typeof GRANT_KIND;
  metadata: ObjectMeta & { name: string };
  spec: TenantGrantSpec;
}
