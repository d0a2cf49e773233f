// The HTTP API against the real apiserver: tokens from the TokenRequest API, checked with
// TokenReview; every action checked with a SubjectAccessReview against real RBAC.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import type { Env } from "../../src/devenv/index.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { installGrant, namespaces, testEnv } from "../support/shared.ts";
import { makeReport } from "../../test/fixtures/make-report.ts";
import { waitFor } from "../../src/devenv/wait.ts";

import { type RunningServer, startHttpServer } from "../../src/util/index.ts";
import { startApi, type RunningApi } from "../../src/server/api.ts";
import { API_PATHS } from "../../src/server/paths.ts";
import { cachingAuthenticator, DEFAULT_TOKEN_AUDIENCE, kubeReviews } from "../../src/server/auth.ts";
import { getPatchJob } from "../../test/support/patchjobs.ts";

let NS: string;
let env: Env;
let api: RunningApi;
let http: RunningServer;
const tokens: Record<string, string> = {};

async function serviceAccount(
  name: string,
  rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>,
  /** "" for a token of the apiserver's own audience. */
  audience = DEFAULT_TOKEN_AUDIENCE,
) {
  const kc = env.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name } } });
  await rbac.createNamespacedRole({ namespace: NS, body: { metadata: { name }, rules } });
  await rbac.createNamespacedRoleBinding({
    namespace: NS,
    body: {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace: NS }],
    },
  });
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: NS,
    name,
    body: { spec: { audiences: audience ? [audience] : [], expirationSeconds: 3600 } },
  });
  return tr.status!.token!;
}

before(async () => {
  env = await testEnv({ nats: false });
  const kc = env.kubeConfig();
  NS = (await namespaces(env, "api-test"))["api-test"]!;
  tokens.patcher = await serviceAccount("patcher", [
    { apiGroups: ["vulnpatcher.io"], resources: ["patchjobs"], verbs: ["get", "list", "watch", "create"] },
    { apiGroups: ["vulnpatcher.io"], resources: ["patchjobs/status"], verbs: ["update"] },
    {
      apiGroups: ["storage.sbomscanner.kubewarden.io"],
      resources: ["vulnerabilityreports"],
      verbs: ["get", "list"],
    },
  ]);
  tokens.viewer = await serviceAccount("viewer", [
    { apiGroups: ["vulnpatcher.io"], resources: ["patchjobs"], verbs: ["get", "list", "watch"] },
  ]);
  await reportsApi(kc).create(makeReport({ name: "debian", namespace: NS }));
  await reportsApi(kc).create(
    makeReport({
      name: "multi-arm64",
      namespace: NS,
      tag: "multi",
      platform: "linux/arm64",
      indexSeed: "idx",
    }),
  );
  // Tags of library/debian no report names (to cancel, to stream): an administrator's grant.
  await installGrant(env, NS, { sources: ["127\\.0\\.0\\.1:5000/library/debian"] });
  tokens.watcher = await serviceAccount("watcher", [
    { apiGroups: ["vulnpatcher.io"], resources: ["patchjobs"], verbs: ["watch"] },
  ]);
  // The same viewer's rights, in a token made for the apiserver, not for the API.
  tokens.apiserverAudience = await serviceAccount(
    "apiserver-token",
    [{ apiGroups: ["vulnpatcher.io"], resources: ["patchjobs"], verbs: ["get", "list", "watch"] }],
    "",
  );
  // As the CLI's (the default audience); answers cached 0.5 s and streams checked every
  // 0.5 s, so that a revoked right shows within the test.
  api = await startApi({
    kc,
    auth: cachingAuthenticator(kubeReviews(kc), { audiences: [DEFAULT_TOKEN_AUDIENCE], ttlMs: 500 }),
    heartbeatMs: 500,
    recheckMs: 500,
  });
  await api.synced;
  http = await startHttpServer({ listen: "127.0.0.1:0", routes: api.routes });
  // The report reaches the API's cache.
  await waitFor(
    "the report in the API's cache",
    async () => {
      const r = await call("GET", `/api/v1/namespaces/${NS}/reports`, tokens.patcher);
      return r.status === 200 && (r.body as { items: unknown[] }).items.length === 2 ? true : undefined;
    },
    10_000,
  );
});

after(async () => {
  await http?.close();
  await api?.stop();
  await env?.stop();
});

async function call(method: string, path: string, token?: string, body?: unknown) {
  const res = await fetch(http.url + path, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed as Record<string, unknown> };
}

test("api - 401 without a token or with one the apiserver does not accept; every route exists (401, not 404)", async () => {
  for (const [method, path] of API_PATHS) {
    const concrete = path.replace("{namespace}", NS).replace("{name}", "x");
    const r = await call(method, concrete);
    assert.equal(r.status, 401, `${method} ${path}`);
    assert.match(String(r.body.error), /bearer token is required/);
  }
  const bad = await call("GET", `/api/v1/namespaces/${NS}/patchjobs`, "not-a-real-token");
  assert.equal(bad.status, 401);
  assert.match(String(bad.body.error), /not accepted/);
  assert.equal((await call("GET", "/api/v1/nothing", tokens.patcher)).status, 404);
  assert.equal((await call("DELETE", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher)).status, 405);
});

test("api - a token whose ServiceAccount may create PatchJobs creates one (201); one that may not gets 403", async () => {
  const denied = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.viewer, {
    image: "127.0.0.1:5000/library/debian:bookworm-vuln",
  });
  assert.equal(denied.status, 403);
  assert.match(
    String(denied.body.error),
    new RegExp(`system:serviceaccount:${NS}:viewer may not create patchjobs in namespace ${NS}`),
  );

  const created = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, {
    image: "127.0.0.1:5000/library/debian:bookworm-vuln",
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const name = String(created.body.name);
  const pj = await getPatchJob(env.kubeConfig(), NS, name);
  assert.equal(pj.spec.source, "manual");
  assert.deepEqual(pj.spec.image, {
    registryURI: "127.0.0.1:5000",
    repository: "library/debian",
    tag: "bookworm-vuln",
    platform: "linux/amd64",
  });
  assert.equal(
    pj.metadata.annotations?.["vulnpatcher.io/requested-by"],
    `system:serviceaccount:${NS}:patcher`,
  );

  // The viewer may read it, through the API, as RBAC says.
  const got = await call("GET", `/api/v1/namespaces/${NS}/patchjobs/${name}`, tokens.viewer);
  assert.equal(got.status, 200);
  assert.equal(got.body.name, name);
  // But not in a namespace where it has no Role.
  assert.equal((await call("GET", `/api/v1/namespaces/default/patchjobs`, tokens.viewer)).status, 403);
});

test("api - tenancy: an image no report of the namespace names and no grant allows is refused (403, SourceNotAllowed); nothing is created", async () => {
  const count = async () =>
    (
      (await env.kubeConfig().makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
        group: "vulnpatcher.io",
        version: "v1alpha1",
        plural: "patchjobs",
        namespace: NS,
      })) as { items: unknown[] }
    ).items.length;
  const before = await count();
  for (const image of ["127.0.0.1:5000/team-b/private:1", "127.0.0.1:5000/library/debian-other:1"]) {
    const r = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, { image });
    assert.equal(r.status, 403, `${image}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.reason, "SourceNotAllowed");
    assert.match(
      String(r.body.error),
      new RegExp(`namespace ${NS} may patch only images its own VulnerabilityReports name.*TenantGrant`),
    );
  }
  assert.equal(await count(), before, "no PatchJob was created");
});

test("api - a patch of a report carries the report's updates; dryRun is passed on; bad input is a 400 with the reason", async () => {
  const r = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, {
    report: "debian",
    dryRun: true,
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const spec = r.body.spec as {
    dryRun?: boolean;
    updates?: Array<{ name: string }>;
    reportRef?: { name: string };
    source: string;
  };
  assert.equal(spec.dryRun, true);
  assert.equal(spec.source, "manual");
  assert.equal(spec.reportRef?.name, "debian");
  assert.deepEqual(
    spec.updates?.map((u) => u.name),
    ["liblzma5", "libpcre2-8-0", "perl-base"],
  );

  const reports = await call("GET", `/api/v1/namespaces/${NS}/reports`, tokens.patcher);
  const item = (reports.body.items as Array<Record<string, any>>).find((i) => i.name === "debian")!;
  assert.equal(item.name, "debian");
  assert.deepEqual(item.vulnerabilities, {
    total: 6,
    fixable: 4,
    bySeverity: { HIGH: 3, MEDIUM: 2, LOW: 1 },
  });
  assert.equal(item.patchable, true);

  // One platform of a multi-arch index alone would overwrite the patched index: refused, with the way out.
  const platform = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, {
    report: "multi-arm64",
  });
  assert.equal(platform.status, 422);
  assert.match(
    String(platform.body.error),
    /one platform \(linux\/arm64\) of a multi-arch index.*"platform": "all"/,
  );

  for (const [body, says] of [
    [{ image: "127.0.0.1:5000/x;rm -rf /:1" }, /image: /],
    [{}, /give "image"/],
    [{ report: "nope" }, /not found/],
    [{ image: "127.0.0.1:5000/x:1", platform: "linux/$(id)" }, /platform/],
  ] as const) {
    const bad = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, body);
    assert.ok([400, 404].includes(bad.status), `${JSON.stringify(body)}: ${bad.status}`);
    assert.match(String(bad.body.error), says);
  }
  const notJson = await fetch(`${http.url}/api/v1/namespaces/${NS}/patchjobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${tokens.patcher}` },
    body: "{",
  });
  assert.equal(notJson.status, 400);
});

test("api - cancel a queued PatchJob: Cancelled, reason Cancelled, by whom; again is 409; without update on patchjobs/status, 403", async () => {
  const c = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, {
    image: "127.0.0.1:5000/library/debian:to-cancel",
  });
  const name = String(c.body.name);
  assert.equal(
    (await call("POST", `/api/v1/namespaces/${NS}/patchjobs/${name}/cancel`, tokens.viewer)).status,
    403,
  );
  const r = await call("POST", `/api/v1/namespaces/${NS}/patchjobs/${name}/cancel`, tokens.patcher);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const pj = await getPatchJob(env.kubeConfig(), NS, name);
  assert.equal(pj.status?.phase, "Cancelled");
  assert.equal(pj.status?.reason, "Cancelled");
  assert.match(pj.status!.message!, new RegExp(`cancelled by system:serviceaccount:${NS}:patcher`));
  const again = await call("POST", `/api/v1/namespaces/${NS}/patchjobs/${name}/cancel`, tokens.patcher);
  assert.equal(again.status, 409);
  assert.match(String(again.body.error), /is Cancelled/);
});

test("api - tokens are checked with the API's audience: one made for the apiserver is refused (401)", async () => {
  const r = await call("GET", `/api/v1/namespaces/${NS}/patchjobs`, tokens.apiserverAudience);
  assert.equal(r.status, 401, JSON.stringify(r.body));
  assert.equal((await call("GET", `/api/v1/namespaces/${NS}/patchjobs`, tokens.viewer)).status, 200);
});

test("api - an event stream ends once its caller may no longer watch (RoleBinding removed)", async () => {
  const res = await fetch(`${http.url}/api/v1/namespaces/${NS}/events`, {
    headers: { authorization: `Bearer ${tokens.watcher}` },
  });
  assert.equal(res.status, 200);
  const body = res.text(); // resolves when the server ends the stream
  await env
    .kubeConfig()
    .makeApiClient(RbacAuthorizationV1Api)
    .deleteNamespacedRoleBinding({ namespace: NS, name: "watcher" });
  // The body resolves only when the server ends the stream.
  assert.match(await body, /event: end\ndata: \{"reason":"Unauthorized"\}/);
});

test("api - the event stream sends each PatchJob change to a caller allowed to watch", async () => {
  assert.equal(
    (
      await fetch(`${http.url}/api/v1/namespaces/default/events`, {
        headers: { authorization: `Bearer ${tokens.viewer}` },
      })
    ).status,
    403,
  );
  const ctl = new AbortController();
  const res = await fetch(`${http.url}/api/v1/namespaces/${NS}/events`, {
    headers: { authorization: `Bearer ${tokens.viewer}` },
    signal: ctl.signal,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const c = await call("POST", `/api/v1/namespaces/${NS}/patchjobs`, tokens.patcher, {
    image: "127.0.0.1:5000/library/debian:streamed",
  });
  const name = String(c.body.name);
  let buf = "";
  const seen = await waitFor(
    "the ADDED event for the new PatchJob",
    async () => {
      const { value } = await reader.read();
      buf += value ?? "";
      const frames = buf.split("\n\n").filter((f) => f.startsWith("event: patchjob"));
      return frames
        .map((f) =>
          JSON.parse(
            f
              .split("\n")
              .find((l) => l.startsWith("data: "))!
              .slice(6),
          ),
        )
        .find((e) => e.object.name === name);
    },
    10_000,
  );
  assert.equal(seen.type, "ADDED");
  assert.equal(seen.object.spec.image.tag, "streamed");
  ctl.abort();
});

test("api - the OpenAPI document describes exactly the routes served, each with its RBAC answers", async () => {
  const r = await call("GET", "/openapi.json");
  assert.equal(r.status, 200);
  const doc = r.body as {
    openapi: string;
    paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  };
  assert.equal(doc.openapi, "3.1.0");
  const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
    Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
  );
  assert.deepEqual(documented.sort(), API_PATHS.map(([m, p]) => `${m} ${p}`).sort());
  for (const [p, ops] of Object.entries(doc.paths))
    for (const [m, op] of Object.entries(ops)) {
      assert.ok(op.responses["401"] && op.responses["403"], `${m} ${p} documents 401 and 403`);
    }
  const ui = await fetch(http.url + "/");
  assert.equal(ui.status, 200);
  assert.match(ui.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.match(await ui.text(), /<script src="\/ui.js"><\/script>/);
});

test("api - the server's own identity is not lent: a caller without RBAC cannot reach reports through it", async () => {
  const r = await call("GET", `/api/v1/namespaces/${NS}/reports`, tokens.viewer);
  assert.equal(r.status, 403);
  assert.match(String(r.body.error), /may not list vulnerabilityreports/);
  // The CRD's own checks still apply to what the API writes.
  const api2 = env.kubeConfig().makeApiClient(CustomObjectsApi);
  const list = (await api2.listNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: "patchjobs",
    namespace: NS,
  })) as {
    items: Array<{ spec: { source: string } }>;
  };
  assert.ok(list.items.every((p) => p.spec.source === "manual"));
});
