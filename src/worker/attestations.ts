// What the patch knows, as attestations on the patched digest: copa's OpenVEX document
// (or, when the executor does not return it, one made from the verified fixes), and our
// patch provenance statement (predicate type PROVENANCE_TYPE, documented in
// docs/signing.md). Built from the PatchJob and what the worker verified, nothing else.
import { formatImageRef, type ImageRef, type PatchJob } from "../api/index.ts";
import { type Attestation, OPENVEX_TYPE, type PatchedFacts, PROVENANCE_TYPE } from "../patch/index.ts";

/** The tools that made the patch, as the worker found them at start. */
export interface ToolVersions {
  copa?: string;
  buildkit?: string;
}

export interface ProvenanceContext {
  pj: PatchJob;
  source: ImageRef;
  patched: ImageRef;
  facts: PatchedFacts;
  worker: string;
  buildkit?: string;
  tools: ToolVersions;
  now?: Date;
}

export function attestationsFor(c: ProvenanceContext): Attestation[] {
  return [
    { type: OPENVEX_TYPE, predicate: c.facts.vex ? completedVex(c.facts.vex, c) : openVex(c) },
    { type: PROVENANCE_TYPE, predicate: provenance(c) },
  ];
}

/** The patch provenance predicate: from what, by what, to what, verified how. */
export function provenance(c: ProvenanceContext) {
  const { pj, facts } = c;
  return {
    source: { image: formatImageRef({ ...c.source, digest: undefined }), digest: facts.sourceDigest },
    patched: { image: formatImageRef({ ...c.patched, digest: undefined }), digest: facts.patchedDigest },
    patchJob: {
      namespace: pj.metadata.namespace,
      name: pj.metadata.name,
      uid: pj.metadata.uid,
      generation: pj.metadata.generation ?? 1,
    },
    ...(pj.spec.reportRef
      ? {
          report: {
            namespace: pj.spec.reportRef.namespace,
            name: pj.spec.reportRef.name,
            uid: pj.spec.reportRef.uid,
          },
        }
      : {}),
    ...(pj.spec.findingsHash ? { findingsHash: pj.spec.findingsHash } : {}),
    mode: facts.plan ? "report" : "update-all",
    planned: (facts.plan?.needed ?? []).map((u) => ({
      name: u.name,
      installedVersion: u.installedVersion,
      fixedVersion: u.fixedVersion,
      vulnerabilities: u.vulnerabilityIDs ?? [],
    })),
    verified: facts.verification.changed.map((ch) => ({ name: ch.name, from: ch.from, to: ch.to })),
    fixedCVEs: facts.verification.fixedCVEs,
    remaining: facts.verification.remaining.map((u) => u.name),
    builder: { worker: c.worker, ...(c.buildkit ? { buildkit: c.buildkit } : {}), tools: c.tools },
    patchedAt: (c.now ?? new Date()).toISOString(),
  };
}

/**
 * copa's document, with a statement added for each verified fixed CVE it does not name
 * (copa's manifest carries one vulnerability id per package; a package update often fixes more).
 */
export function completedVex(copaVex: string, c: ProvenanceContext) {
  const doc = JSON.parse(copaVex) as {
    statements?: Array<{ vulnerability?: { "@id"?: string; name?: string } }>;
  };
  const named = new Set(
    (doc.statements ?? []).map((s) => s.vulnerability?.name ?? s.vulnerability?.["@id"] ?? ""),
  );
  const ours = openVex(c).statements.filter((s) => !named.has(s.vulnerability.name));
  return { ...doc, statements: [...(doc.statements ?? []), ...ours] };
}

/** An OpenVEX document of the verified fixes: each fixed CVE `fixed` in the patched image. */
export function openVex(c: ProvenanceContext) {
  const product = `pkg:oci/${c.patched.repository.split("/").pop()}@${encodeURIComponent(c.facts.patchedDigest)}?repository_url=${encodeURIComponent(`${c.patched.registry}/${c.patched.repository}`)}`;
  const byCve = new Map<string, string[]>();
  for (const u of c.facts.verification.fixed)
    for (const id of u.vulnerabilityIDs ?? []) byCve.set(id, [...(byCve.get(id) ?? []), u.name]);
  return {
    "@context": "https://openvex.dev/ns/v0.2.0",
    "@id": `https://vulnpatcher.io/vex/${c.pj.metadata.uid ?? c.pj.metadata.name}/${c.pj.metadata.generation ?? 1}`,
    author: "vuln-patcher",
    timestamp: (c.now ?? new Date()).toISOString(),
    version: 1,
    statements: [...byCve].map(([cve, packages]) => ({
      vulnerability: { name: cve },
      products: [{ "@id": product }],
      status: "fixed",
      status_notes: `updated ${packages.join(", ")} (verified in the patched image's package database)`,
    })),
  };
}
