// The attestations' content, from plain values (the signed, verified thing is
// test/integration/signing.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { PatchJob } from "../api/index.ts";
import { OPENVEX_TYPE, PROVENANCE_TYPE } from "../patch/index.ts";
import type { provenance } from "./attestations.ts";
import { attestationsFor, type ProvenanceContext } from "./attestations.ts";

const pj = {
  apiVersion: "vulnpatcher.io/v1alpha1",
  kind: "PatchJob",
  metadata: { name: "web", namespace: "team-a", uid: "u-1", generation: 3 },
  spec: {
    source: "report",
    reportRef: { namespace: "team-a", name: "web-report", uid: "r-1" },
    findingsHash: "sha256:abc",
  },
} as unknown as PatchJob;

const ctx = (vex?: string): ProvenanceContext => ({
  pj,
  source: { registry: "r.example", repository: "team-a/web", tag: "1.0" },
  patched: { registry: "r.example", repository: "team-a/web", tag: "1.0-patched" },
  facts: {
    sourceDigest: "sha256:src",
    patchedDigest: "sha256:new",
    verification: {
      fixed: [
        {
          name: "liblzma5",
          installedVersion: "5.4.1-0.2",
          fixedVersion: "5.4.1-1",
          vulnerabilityIDs: ["CVE-1", "CVE-2"],
        },
      ],
      remaining: [],
      fixedCVEs: ["CVE-1", "CVE-2"],
      changed: [{ name: "liblzma5", from: "5.4.1-0.2", to: "5.4.1-1" }],
    },
    ...(vex ? { vex } : {}),
  },
  worker: "worker-0",
  buildkit: "tcp://bk-0:1234",
  tools: { copa: "0.14.2" },
  now: new Date("2026-11-30T00:00:00Z"),
});

test("attestations: the provenance names source, PatchJob, report, what changed and what is fixed", () => {
  const [vex, prov] = attestationsFor(ctx());
  assert.equal(vex!.type, OPENVEX_TYPE);
  assert.equal(prov!.type, PROVENANCE_TYPE);
  const p = prov!.predicate as ReturnType<typeof provenance>;
  assert.deepEqual(p.source, { image: "r.example/team-a/web:1.0", digest: "sha256:src" });
  assert.deepEqual(p.patched, { image: "r.example/team-a/web:1.0-patched", digest: "sha256:new" });
  assert.deepEqual(p.patchJob, { namespace: "team-a", name: "web", uid: "u-1", generation: 3 });
  assert.deepEqual(p.report, { namespace: "team-a", name: "web-report", uid: "r-1" });
  assert.equal(p.findingsHash, "sha256:abc");
  assert.deepEqual(p.verified, [{ name: "liblzma5", from: "5.4.1-0.2", to: "5.4.1-1" }]);
  assert.deepEqual(p.fixedCVEs, ["CVE-1", "CVE-2"]);
  assert.equal(p.mode, "update-all");
  assert.deepEqual(p.builder, { worker: "worker-0", buildkit: "tcp://bk-0:1234", tools: { copa: "0.14.2" } });
});

test("attestations: without copa's VEX, one statement per verified fixed CVE; with it, copa's completed", () => {
  const ours = attestationsFor(ctx())[0]!.predicate as {
    statements: Array<{ vulnerability: { name: string }; status: string }>;
  };
  assert.deepEqual(
    ours.statements.map((s) => [s.vulnerability.name, s.status]),
    [
      ["CVE-1", "fixed"],
      ["CVE-2", "fixed"],
    ],
  );
  const copa = JSON.stringify({
    "@context": "https://openvex.dev/ns",
    author: "Project Copacetic",
    statements: [
      { vulnerability: { "@id": "CVE-1" }, products: [{ "@id": "pkg:oci/web" }], status: "fixed" },
    ],
  });
  const merged = attestationsFor(ctx(copa))[0]!.predicate as {
    author: string;
    statements: Array<{ vulnerability: { "@id"?: string; name?: string } }>;
  };
  assert.equal(merged.author, "Project Copacetic", "copa's document, kept");
  assert.deepEqual(
    merged.statements.map((s) => s.vulnerability["@id"] ?? s.vulnerability.name),
    ["CVE-1", "CVE-2"],
    "CVE-2, which copa's manifest did not carry, added once",
  );
});
