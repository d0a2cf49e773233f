// Fuzz of the report parser and the controller's decision: thousands of generated
// malformed and hostile reports (test/fixtures/malformed.ts, seeded). Nothing throws,
// every admitted malformed report is decided Invalid with a reason, and nothing that
// reaches a spec could become a flag or a shell word on copa's command line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { admitted, anything, INJECTIONS } from "../../test/fixtures/malformed.ts";
import { decideFacts, reportFacts, type Decision } from "./index.ts";
import { convertReport, parseReport, toUpdateManifest } from "../api/index.ts";
import { copaArgv } from "../patch/index.ts";
import { SPEC_SCHEMA, patchJobSpecProblems } from "../../test/support/decide.ts";
import { sourceRef, targetRef } from "./naming.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20261129);
const N = 2000;

function decideRaw(input: unknown): Decision {
  const p = parseReport(input);
  if (!p.ok) return { action: "invalid", name: "?", reason: p.reason, message: p.message };
  return decideFacts(reportFacts(p.value), undefined, {}, SPEC_SCHEMA);
}

/** A spec that reaches copa: every argv value is a plain word, and the manifest holds only valid names. */
function assertSafeForCopa(d: Extract<Decision, { action: "create" }>, where: string): void {
  assert.deepEqual(patchJobSpecProblems(d.spec), [], where);
  const argv = copaArgv({
    image: sourceRef(d.spec),
    target: targetRef(d.spec),
    buildkitAddr: "tcp://127.0.0.1:1234",
    manifestPath: "/tmp/m.json",
    timeout: "10m",
  });
  for (let i = 1; i < argv.length; i++) {
    if (argv[i - 1]!.startsWith("--") && !argv[i]!.startsWith("--"))
      assert.doesNotMatch(argv[i]!, /^-|[\s;&|`$()<>'"\\]/, `${where}: argv value ${argv[i]}`);
  }
  for (const u of d.spec.updates ?? []) {
    assert.match(u.name, /^[a-zA-Z0-9][a-zA-Z0-9.+\-:~_]*$/, where);
    assert.match(u.fixedVersion, /^[0-9][A-Za-z0-9.+~:-]*$/, where);
    assert.match(u.installedVersion, /^[0-9][A-Za-z0-9.+~:-]*$/, where);
  }
}

test(`fuzz - ${N} admitted malformed reports: each decided Invalid with a reason, none reaches copa (seed ${SEED})`, () => {
  const kinds = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const g = admitted(SEED, i);
    const where = `seed ${SEED} #${i} (${g.kind})`;
    const d = decideRaw(g.report);
    assert.equal(d.action, "invalid", `${where}: decided ${d.action}: ${JSON.stringify(d).slice(0, 300)}`);
    if (d.action !== "invalid") continue;
    assert.ok(
      d.message.length > 10 && d.message.length < 2000,
      `${where}: message ${d.message.length} chars`,
    );
    kinds.set(g.kind.split(" + ")[0]!, (kinds.get(g.kind.split(" + ")[0]!) ?? 0) + 1);
  }
  // Every kind of malformation was generated (the generator really covers them).
  assert.ok(kinds.size >= 10, `kinds seen: ${[...kinds.keys()].join(", ")}`);
});

test(`fuzz - ${N} reports of any shape (wrong types, deep nesting, non-objects): no throw, bounded errors, safe specs (seed ${SEED})`, () => {
  let invalid = 0;
  let created = 0;
  for (let i = 0; i < N; i++) {
    const g = anything(SEED, i);
    const where = `seed ${SEED} #${i} (${g.kind})`;
    let d: Decision;
    try {
      d = decideRaw(g.input);
    } catch (err) {
      assert.fail(`${where}: threw ${(err as Error).message}`);
    }
    if (d.action === "invalid") {
      invalid++;
      assert.ok(d.message.length < 2000, `${where}: message of ${d.message.length} chars`);
    }
    if (d.action === "create") {
      created++;
      assertSafeForCopa(d, where);
      const p = parseReport(g.input);
      assert.ok(p.ok);
      const c = convertReport(p.value);
      assert.ok(c.ok);
      assert.doesNotThrow(() => JSON.stringify(toUpdateManifest(c.value)));
    }
  }
  // Both branches were exercised: some inputs were rejected, some still made a patch.
  assert.ok(invalid > N / 3, `${invalid} invalid`);
  assert.ok(created > 0, `${created} created`);
});

test("fuzz - each injection string in each image field is rejected by the parser with InvalidImageReference or a digest/platform reason", () => {
  for (const field of ["registryURI", "repository", "tag", "digest", "platform"]) {
    for (const bad of INJECTIONS) {
      // A clean image, then one hostile field.
      const r = structuredClone(admitted(1, 0).report);
      Object.assign(r.imageMetadata, {
        registryURI: "registry.example.com:5000",
        repository: "library/debian",
        tag: "bookworm",
        digest: "sha256:" + "b".repeat(64),
        platform: "linux/amd64",
      });
      r.imageMetadata[field] = bad;
      const p = parseReport(r);
      assert.equal(p.ok, false, `${field}=${JSON.stringify(bad)} was accepted`);
      if (!p.ok)
        assert.ok(
          ["InvalidImageReference", "InvalidDigest", "InvalidPlatform", "MissingDigest"].includes(p.reason),
          `${field}=${JSON.stringify(bad)}: ${p.reason}`,
        );
    }
  }
});
