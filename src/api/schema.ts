// Check a value against the OpenAPI subset our CRD uses (type, required, enum,
// pattern, min/maxLength, maxItems, minimum), before the apiserver does. The controller
// checks every spec it derives from a report, so hostile or oversized report content
// becomes an Invalid PatchJob with the reason, never a write the apiserver rejects and
// the work queue retries forever. CEL rules are not evaluated here (the apiserver does).
import type { SchemaNode } from "./crd.ts";

const MAX_PROBLEMS = 5;

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function show(v: string): string {
  return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
}

/** The problems of `value` against `schema`, as "path: what" lines (at most a few). */
export function schemaProblems(value: unknown, schema: SchemaNode, path = ""): string[] {
  const out: string[] = [];
  walk(value, schema, path || ".", out);
  return out.slice(0, MAX_PROBLEMS);
}

function walk(v: unknown, s: SchemaNode, path: string, out: string[]): void {
  if (out.length >= MAX_PROBLEMS) return;
  const t = typeOf(v);
  if (s.type) {
    const ok = s.type === t || (s.type === "number" && t === "integer");
    if (!ok) {
      out.push(`${path}: expected ${s.type}, got ${t}`);
      return;
    }
  }
  if (s.enum && !s.enum.includes(v))
    out.push(`${path}: ${JSON.stringify(v)} is not one of ${s.enum.join(", ")}`);
  if (typeof v === "string") {
    const max = s.maxLength as number | undefined;
    const min = s.minLength as number | undefined;
    if (max !== undefined && v.length > max) out.push(`${path}: longer than ${max} characters`);
    if (min !== undefined && v.length < min) out.push(`${path}: shorter than ${min} characters`);
    if (typeof s.pattern === "string" && !new RegExp(s.pattern, "u").test(v))
      out.push(`${path}: ${show(v)} does not match ${s.pattern}`);
  }
  if (typeof v === "number" && typeof s.minimum === "number" && v < s.minimum)
    out.push(`${path}: less than ${s.minimum}`);
  if (Array.isArray(v)) {
    if (typeof s.maxItems === "number" && v.length > s.maxItems)
      out.push(`${path}: more than ${s.maxItems} items`);
    if (s.items) for (const [i, x] of v.entries()) walk(x, s.items, `${path}[${i}]`, out);
  }
  if (t === "object") {
    const o = v as Record<string, unknown>;
    for (const r of s.required ?? []) if (o[r] === undefined) out.push(`${path}.${r}: required`);
    for (const [k, sub] of Object.entries(s.properties ?? {}))
      if (o[k] !== undefined) walk(o[k], sub, path === "." ? `.${k}` : `${path}.${k}`, out);
  }
}

/** Problems of a PatchJob spec against the CRD's spec schema (patchJobSpecSchema(), loaded once). */
export function specProblems(spec: unknown, schema: SchemaNode): string[] {
  return schemaProblems(spec, schema, "spec");
}
