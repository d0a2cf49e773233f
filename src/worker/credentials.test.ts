import { test } from "node:test";
import assert from "node:assert/strict";
import { PatchError, type PatchJob, Reason, Source, type TenantGrant } from "../api/index.ts";
import type { Credential } from "../registry/index.ts";
import {
  chooseCredentials,
  describeCredentials,
  explainDenied,
  hostsOf,
  loadSources,
  type SourceReader,
} from "./credentials.ts";

const c = (u: string): Credential => ({ username: u, password: `${u}-secret` });

function pj(
  o: { ns?: string; policy?: { name: string; namespace?: string }; target?: string } = {},
): PatchJob {
  return {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "PatchJob",
    metadata: { name: "p", namespace: o.ns ?? "team-a" },
    spec: {
      source: Source.Report,
      image: { registryURI: "reg.a:5000", repository: "team-a/app", tag: "1", platform: "linux/amd64" },
      ...(o.policy ? { policyRef: o.policy } : {}),
      ...(o.target ? { target: { reference: o.target } } : {}),
    },
  };
}

/** A namespace as the worker would read it (a simulation of the apiserver's answers). */
function reader(o: {
  secrets?: Record<string, Map<string, Credential>>;
  policySecret?: string;
  registries?: Array<{ name: string; uri: string; authSecret?: string }>;
  grants?: TenantGrant["spec"][];
  labels?: Record<string, string>;
}): SourceReader & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    async secret(ns, name) {
      reads.push(`secret ${ns}/${name}`);
      const s = o.secrets?.[`${ns}/${name}`];
      if (!s) throw new PatchError(Reason.CredentialsUnavailable, `Secret ${ns}/${name} does not exist`);
      return s;
    },
    async policy(ns, name) {
      reads.push(`policy ${ns}/${name}`);
      return o.policySecret
        ? ({ metadata: { name, namespace: ns }, spec: { credentialsSecret: o.policySecret } } as never)
        : undefined;
    },
    async registries(ns) {
      reads.push(`registries ${ns}`);
      return (o.registries ?? []).map((r) => ({
        metadata: { name: r.name, namespace: ns },
        spec: { uri: r.uri, ...(r.authSecret ? { authSecret: r.authSecret } : {}) },
      }));
    },
    async grants() {
      reads.push("grants");
      return (o.grants ?? []).map((spec, i) => ({
        apiVersion: "vulnpatcher.io/v1alpha1",
        kind: "TenantGrant",
        metadata: { name: `g${i}` },
        spec,
      }));
    },
    async namespaceLabels() {
      return o.labels ?? {};
    },
  };
}

const GLOBAL = new Map([
  ["reg.a:5000", c("global")],
  ["reg.b:5000", c("global-b")],
]);

test("credentials - the namespace's own: a policy's Secret first, then a sbomscanner Registry's authSecret for that host", async () => {
  const r = reader({
    policySecret: "pol",
    secrets: {
      "team-a/pol": new Map([["reg.a:5000", c("policy")]]),
      "team-a/reg": new Map([["reg.a:5000", c("registry")]]),
    },
    registries: [{ name: "a", uri: "reg.a:5000", authSecret: "reg" }],
  });
  const withPolicy = pj({ policy: { name: "mine" } });
  const t = await chooseCredentials(
    hostsOf(withPolicy),
    await loadSources(withPolicy, hostsOf(withPolicy), r, GLOBAL),
  );
  assert.equal(t.creds.get("reg.a:5000")?.username, "policy");
  assert.deepEqual(describeCredentials(t), { "reg.a:5000": "policy Secret pol" });
  const plain = pj();
  const t2 = await chooseCredentials(hostsOf(plain), await loadSources(plain, hostsOf(plain), r, GLOBAL));
  assert.equal(t2.creds.get("reg.a:5000")?.username, "registry");
  assert.deepEqual(t2.origins["reg.a:5000"], { kind: "registry", registry: "a", secret: "reg" });
  assert.ok(!r.reads.includes("grants"), "grants are not read when the namespace has its own");
});

test("credentials - a policy of another namespace lends nothing; its Secret is never read", async () => {
  const r = reader({
    policySecret: "pol",
    secrets: { "default/pol": new Map([["reg.a:5000", c("other")]]) },
  });
  const p = pj({ policy: { name: "theirs", namespace: "default" } });
  const t = await chooseCredentials(hostsOf(p), await loadSources(p, hostsOf(p), r, new Map()));
  assert.equal(t.creds.size, 0);
  assert.ok(!r.reads.some((x) => x.startsWith("policy") || x.startsWith("secret")), r.reads.join(", "));
});

test("credentials - the workers' own only with a grant; withheld otherwise, and a refusal then says why", async () => {
  const p = pj({ target: "reg.b:5000/team-a/app:1-patched" });
  assert.deepEqual(hostsOf(p), ["reg.a:5000", "reg.b:5000"]);
  const none = await chooseCredentials(hostsOf(p), await loadSources(p, hostsOf(p), reader({}), GLOBAL));
  assert.equal(none.creds.size, 0);
  assert.deepEqual(none.withheld, ["reg.a:5000", "reg.b:5000"]);
  const denied = explainDenied(
    new PatchError(Reason.RegistryDenied, "registry reg.a:5000 refused: 401"),
    p,
    none,
  );
  assert.ok(denied instanceof PatchError);
  assert.equal(denied.reason, Reason.CredentialsNotAllowed);
  assert.match(
    denied.message,
    /401.*namespace team-a has no credentials of its own for reg\.a:5000, reg\.b:5000.*TenantGrant with globalCredentials/,
  );
  // Other errors pass through.
  const other = new PatchError(Reason.ImageNotFound, "no such image");
  assert.equal(explainDenied(other, p, none), other);

  const granted = await chooseCredentials(
    hostsOf(p),
    await loadSources(
      p,
      hostsOf(p),
      reader({
        grants: [{ namespaceSelector: { matchLabels: { team: "a" } }, globalCredentials: true }],
        labels: { team: "a" },
      }),
      GLOBAL,
    ),
  );
  assert.equal(granted.creds.get("reg.b:5000")?.username, "global-b");
  assert.deepEqual(granted.withheld, []);
  // A grant without globalCredentials does not lend them.
  const partial = await chooseCredentials(
    hostsOf(p),
    await loadSources(
      p,
      hostsOf(p),
      reader({ grants: [{ namespaces: ["team-a"], sources: [".*"] }] }),
      GLOBAL,
    ),
  );
  assert.equal(partial.creds.size, 0);
});

test("credentials - a Registry's Secret with one entry counts for its registry, whatever host the entry names", async () => {
  const r = reader({
    secrets: { "team-a/reg": new Map([["https://reg.a:5000/v2/", c("one")]]) },
    registries: [{ name: "a", uri: "reg.a:5000", authSecret: "reg" }],
  });
  const p = pj();
  const t = await chooseCredentials(hostsOf(p), await loadSources(p, hostsOf(p), r, new Map()));
  assert.equal(t.creds.get("reg.a:5000")?.username, "one");
});
