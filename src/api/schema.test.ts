import { test } from "node:test";
import assert from "node:assert/strict";
import { schemaProblems } from "./schema.ts";
import { decide, patchJobSpecProblems } from "../../test/support/decide.ts";
import { debianReport } from "../../test/fixtures/reports.ts";

test("schema - a spec made from a real report satisfies the CRD", () => {
  const d = decide(debianReport() as never, undefined);
  assert.equal(d.action, "create");
  if (d.action === "create") assert.deepEqual(patchJobSpecProblems(d.spec), []);
});

test("schema - each rule of the CRD subset is enforced, with the path", () => {
  const d = decide(debianReport() as never, undefined);
  assert.equal(d.action, "create");
  if (d.action !== "create") return;
  const cases: Array<[string, (s: any) => void, RegExp]> = [
    ["pattern", (s) => (s.image.repository = "Upper/Case"), /spec\.image\.repository: .* does not match/],
    [
      "maxLength",
      (s) => (s.updates[0].fixedVersion = "1".repeat(129)),
      /spec\.updates\[0\]\.fixedVersion: longer than 128/,
    ],
    [
      "enum",
      (s) => (s.source = "elsewhere"),
      /spec\.source: "elsewhere" is not one of report, policy, manual/,
    ],
    ["type", (s) => (s.updates = "all"), /spec\.updates: expected array, got string/],
    ["required", (s) => delete s.source, /spec\.source: required/],
    [
      "maxItems",
      (s) => (s.updates[0].vulnerabilityIDs = Array.from({ length: 501 }, (_, i) => `CVE-${i}`)),
      /more than 500 items/,
    ],
    [
      "items maxLength",
      (s) => (s.updates[0].vulnerabilityIDs = ["CVE-" + "9".repeat(70)]),
      /vulnerabilityIDs\[0\]: longer than 64/,
    ],
  ];
  for (const [rule, mutate, re] of cases) {
    const spec = structuredClone(d.spec) as any;
    mutate(spec);
    const problems = patchJobSpecProblems(spec);
    assert.ok(
      problems.some((p) => re.test(p)),
      `${rule}: ${problems.join(" | ")}`,
    );
  }
});

test("schema - at most five problems, each bounded", () => {
  const problems = schemaProblems(
    { a: Array.from({ length: 50 }, () => "x".repeat(10_000)) },
    {
      type: "object",
      properties: { a: { type: "array", items: { type: "string", maxLength: 3, pattern: "^y$" } } },
    },
  );
  assert.equal(problems.length, 5);
  for (const p of problems) assert.ok(p.length < 200, p);
});
