import { test } from "node:test";
import assert from "node:assert/strict";
import { patchJobCRD, patchPolicyCRD, tenantGrantCRD, type SchemaNode } from "./crd.ts";
import { fullTenantGrant } from "../../test/fixtures/tenantgrant-full.ts";
import { GRANT_KIND, GRANT_PLURAL } from "./tenantgrant.ts";
import { fullPatchPolicy } from "../../test/fixtures/patchpolicy-full.ts";
import { Mode, SEVERITIES } from "./index.ts";
import { compilePolicy } from "../decide/index.ts";
import { GROUP, KIND, PLURAL, Phase, VERSION } from "./patchjob.ts";
import { fullPatchJob } from "../../test/fixtures/patchjob-full.ts";

/** Every property path a schema declares ("spec.image.digest", "status.conditions[].type"). */
function schemaPaths(node: SchemaNode, prefix = ""): string[] {
  const out: string[] = [];
  if (node.properties) {
    for (const [k, child] of Object.entries(node.properties)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.push(p, ...schemaPaths(child, p));
    }
  }
  if (node.items) out.push(...schemaPaths(node.items, `${prefix}[]`));
  return out;
}

function valuePaths(v: unknown, prefix = ""): string[] {
  const out: string[] = [];
  if (Array.isArray(v)) for (const item of v.slice(0, 1)) out.push(...valuePaths(item, `${prefix}[]`));
  else if (v && typeof v === "object") {
    for (const [k, child] of Object.entries(v)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.push(p, ...valuePaths(child, p));
    }
  }
  return out;
}

test("crd - names match the TypeScript constants", () => {
  const crd = patchJobCRD();
  assert.equal(crd.spec.group, GROUP);
  assert.equal(crd.spec.names.plural, PLURAL);
  assert.equal(crd.spec.names.kind, KIND);
  assert.equal(crd.spec.versions[0]?.name, VERSION);
});

test("crd - the schema and the TypeScript types declare the same fields", () => {
  const schema = patchJobCRD().spec.versions[0]!.schema.openAPIV3Schema;
  const inSchema = new Set(schemaPaths(schema).filter((p) => p.startsWith("spec") || p.startsWith("status")));
  const inTypes = new Set(
    valuePaths({ spec: fullPatchJob.spec, status: fullPatchJob.status }).filter(
      (p) => !p.startsWith("spec.rollout.matchLabels."), // a map: its keys are data
    ),
  );
  assert.deepEqual(
    [...inSchema].filter((p) => !inTypes.has(p)),
    [],
    "in the CRD but not in the types",
  );
  assert.deepEqual(
    [...inTypes].filter((p) => !inSchema.has(p)),
    [],
    "in the types but not in the CRD",
  );
});

test("crd - the phase enum is exactly the Phase constants", () => {
  const status = patchJobCRD().spec.versions[0]!.schema.openAPIV3Schema.properties!.status!;
  assert.deepEqual([...(status.properties!.phase!.enum as string[])].sort(), Object.values(Phase).sort());
});

test("crd - PatchPolicy: the schema and the TypeScript types declare the same fields; enums agree", () => {
  const schema = patchPolicyCRD().spec.versions[0]!.schema.openAPIV3Schema;
  const inSchema = new Set(schemaPaths(schema).filter((p) => p.startsWith("spec") || p.startsWith("status")));
  const inTypes = new Set(
    valuePaths({ spec: fullPatchPolicy.spec, status: fullPatchPolicy.status }).filter(
      (p) =>
        !p.startsWith("spec.selector.reportLabels.matchLabels.") &&
        !p.startsWith("spec.rollout.matchLabels."), // maps: their keys are data
    ),
  );
  assert.deepEqual(
    [...inSchema].filter((p) => !inTypes.has(p)),
    [],
    "in the CRD but not in the types",
  );
  assert.deepEqual(
    [...inTypes].filter((p) => !inSchema.has(p)),
    [],
    "in the types but not in the CRD",
  );
  const spec = schema.properties!.spec!;
  assert.deepEqual(spec.properties!.mode!.enum, Object.values(Mode));
  assert.deepEqual(spec.properties!.selector!.properties!.minSeverity!.enum, [...SEVERITIES]);
  // The example itself is a valid policy (but for setting both target forms, which the CRD refuses).
  const { tagTemplate: _t, ...target } = fullPatchPolicy.spec.target;
  const r = compilePolicy({ ...fullPatchPolicy, spec: { ...fullPatchPolicy.spec, target } }, "vuln-patcher");
  assert.ok(r.ok, r.ok ? "" : r.problems.join("; "));
});

test("crd - TenantGrant: cluster-scoped; the schema and the TypeScript types declare the same fields", () => {
  const crd = tenantGrantCRD();
  assert.equal(crd.spec.names.plural, GRANT_PLURAL);
  assert.equal(crd.spec.names.kind, GRANT_KIND);
  assert.equal(
    (crd.spec as { scope?: string }).scope,
    "Cluster",
    "only administrators write cluster-scoped objects",
  );
  const schema = crd.spec.versions[0]!.schema.openAPIV3Schema;
  const inSchema = new Set(schemaPaths(schema).filter((p) => p.startsWith("spec")));
  const inTypes = new Set(
    valuePaths({ spec: fullTenantGrant.spec }).filter(
      (p) => !p.startsWith("spec.namespaceSelector.matchLabels."),
    ),
  );
  assert.deepEqual(
    [...inSchema].filter((p) => !inTypes.has(p)),
    [],
    "in the CRD but not in the types",
  );
  assert.deepEqual(
    [...inTypes].filter((p) => !inSchema.has(p)),
    [],
    "in the types but not in the CRD",
  );
});
