import { test } from "node:test";
import assert from "node:assert/strict";
import { type PatchJobSpec, Reason, Source, type TenantGrant } from "../api/index.ts";
import {
  checkTenancy,
  compileGrant,
  type CompiledGrant,
  grantsFor,
  type ImageName,
  mayUseGlobalCredentials,
  type TenancyFacts,
} from "./tenancy.ts";

const A_DIGEST = `sha256:${"a".repeat(64)}`;
const B_DIGEST = `sha256:${"b".repeat(64)}`;

function spec(
  over: Partial<PatchJobSpec> = {},
  image: Partial<NonNullable<PatchJobSpec["image"]>> = {},
): PatchJobSpec {
  return {
    source: Source.Manual,
    image: {
      registryURI: "reg.example:5000",
      repository: "team-a/app",
      tag: "1.0",
      digest: A_DIGEST,
      platform: "linux/amd64",
      ...image,
    },
    ...over,
  };
}

/** team-a's reports name reg.example:5000/team-a/app@A (tag 1.0). */
const named = (i: ImageName) =>
  i.registry === "reg.example:5000" &&
  i.repository === "team-a/app" &&
  (i.digest ? i.digest === A_DIGEST : i.tag === "1.0");

function facts(over: Partial<TenancyFacts> = {}): TenancyFacts {
  return { namespace: "team-a", grants: [], reportNames: named, ...over };
}

function grant(spec: TenantGrant["spec"], name = "g"): CompiledGrant {
  const r = compileGrant({
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "TenantGrant",
    metadata: { name },
    spec,
  });
  assert.ok(r.ok, r.ok ? "" : r.problems.join("; "));
  return r.value;
}

test("tenancy - an image the namespace's reports name, pushed to its own repository: allowed", () => {
  assert.deepEqual(checkTenancy(spec(), facts()), { ok: true });
  assert.deepEqual(checkTenancy(spec({ target: { tagSuffix: "-fixed" } }), facts()), { ok: true });
  assert.deepEqual(
    checkTenancy(spec({ target: { reference: "reg.example:5000/team-a/app:hotfix" } }), facts()),
    { ok: true },
  );
});

test("tenancy - another namespace's image (or a digest no report names) is refused, whatever spec.source says", () => {
  for (const s of [
    spec({}, { repository: "team-b/private", digest: B_DIGEST }),
    spec({}, { digest: B_DIGEST }),
    spec({ source: Source.Report }, { repository: "team-b/private", digest: B_DIGEST }),
    spec({}, { digest: undefined, tag: "2.0" }),
  ]) {
    const v = checkTenancy(s, facts());
    assert.equal(v.ok, false, JSON.stringify(s.image));
    if (v.ok) continue;
    assert.equal(v.reason, Reason.SourceNotAllowed);
    assert.match(v.message, /namespace team-a may patch only images its own VulnerabilityReports name/);
    assert.match(v.message, /TenantGrant/, "says who may allow it");
  }
});

test("tenancy - a push to another repository is refused, and says where it may push", () => {
  const v = checkTenancy(spec({ target: { reference: "reg.example:5000/team-b/app:prod" } }), facts());
  assert.equal(v.ok, false);
  if (v.ok) return;
  assert.equal(v.reason, Reason.TargetNotAllowed);
  assert.match(
    v.message,
    /only to the repository each image came from \(reg\.example:5000\/team-a\/app\), not reg\.example:5000\/team-b\/app/,
  );
  // Another registry with the same repository is another repository.
  const other = checkTenancy(spec({ target: { reference: "elsewhere.example/team-a/app:1" } }), facts());
  assert.equal(other.ok, false);
});

test("tenancy - a grant's sources and targets are whole-match RE2 patterns of registry/repository", () => {
  const g = grant({
    namespaces: ["team-a"],
    sources: ["reg\\.example:5000/base/.*"],
    targets: ["reg\\.example:5000/team-a-mirror/.+"],
  });
  const f = facts({ grants: [g] });
  assert.deepEqual(checkTenancy(spec({}, { repository: "base/debian", digest: B_DIGEST }), f), { ok: true });
  assert.deepEqual(checkTenancy(spec({ target: { reference: "reg.example:5000/team-a-mirror/app:1" } }), f), {
    ok: true,
  });
  // Anchored: a prefix or suffix of a granted name is not granted.
  assert.equal(checkTenancy(spec({}, { repository: "x/base/debian", digest: B_DIGEST }), f).ok, false);
  assert.equal(
    checkTenancy(spec({ target: { reference: "reg.example:5000/team-a-mirror2/app:1" } }), f).ok,
    false,
  );
});

test("tenancy - a global policy's own target is granted; a PatchJob naming it with another target is not", () => {
  const s = spec({ target: { reference: "reg.example:5000/patched/team-a/app:1.0-p" } });
  assert.deepEqual(checkTenancy(s, facts({ globalPolicyTarget: "reg.example:5000/patched/team-a/app" })), {
    ok: true,
  });
  assert.equal(
    checkTenancy(s, facts({ globalPolicyTarget: "reg.example:5000/patched/team-b/app" })).ok,
    false,
  );
});

test("tenancy - an index is read by its index digest; a report's indexDigest names it", () => {
  const idx = `sha256:${"c".repeat(64)}`;
  const f = facts({ reportNames: (i) => i.digest === idx });
  assert.deepEqual(checkTenancy(spec({}, { platform: "all", indexDigest: idx, digest: idx }), f), {
    ok: true,
  });
  assert.equal(
    checkTenancy(spec({}, { platform: "all", indexDigest: B_DIGEST, digest: B_DIGEST }), f).ok,
    false,
  );
});

test("tenancy - a spec without an image (an Invalid report's record) has nothing to refuse", () => {
  assert.deepEqual(checkTenancy({ source: Source.Report }, facts({ reportNames: () => false })), {
    ok: true,
  });
});

test("tenancy - grants: by name or by label selector; a bad pattern or no namespaces is a problem", () => {
  const byName = grant({ namespaces: ["team-a"] }, "n");
  const byLabel = grant({ namespaceSelector: { matchLabels: { team: "a" } }, globalCredentials: true }, "l");
  assert.deepEqual(
    grantsFor([byName, byLabel], "team-a", {}).map((g) => g.name),
    ["n"],
  );
  assert.deepEqual(
    grantsFor([byName, byLabel], "team-x", { team: "a" }).map((g) => g.name),
    ["l"],
  );
  assert.deepEqual(grantsFor([byName, byLabel], "team-b", { team: "b" }), []);
  assert.equal(mayUseGlobalCredentials([byName]), false);
  assert.equal(mayUseGlobalCredentials([byName, byLabel]), true);
  const bad = compileGrant({
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "TenantGrant",
    metadata: { name: "bad" },
    spec: { sources: ["(unclosed"] },
  });
  assert.equal(bad.ok, false);
  if (!bad.ok) {
    assert.match(bad.problems.join("\n"), /spec\.sources: "\(unclosed"/);
    assert.match(bad.problems.join("\n"), /name the namespaces or give a namespaceSelector/);
  }
});

test("tenancy - an unusable target is refused (nothing to compare it with)", () => {
  const v = checkTenancy(spec({ target: { reference: "reg.example:5000/team-a/app@" + A_DIGEST } }), facts());
  assert.equal(v.ok, false);
  if (!v.ok) assert.match(v.message, /target is not usable: .*digest/);
});

test("tenancy - pathological patterns in a grant match a 10,000-character name in linear time", () => {
  const g = grant({
    namespaces: ["team-a"],
    sources: [
      "reg\\.example:5000/(a+){1,40}",
      "reg\\.example:5000/(a|a)*b",
      "reg\\.example:5000/a*a*a*a*a*a*b",
    ],
  });
  const f = facts({ grants: [g] });
  const long = "a".repeat(10_000);
  // Whatever the answer, it came back: RE2 does not backtrack (the time is the benchmark's job).
  assert.equal(checkTenancy(spec({}, { repository: long, digest: B_DIGEST }), f).ok, true);
  assert.equal(checkTenancy(spec({}, { repository: `${long}c`, digest: B_DIGEST }), f).ok, false);
});
