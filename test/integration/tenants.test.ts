// Two tenants on the real apiserver, a registry that asks for a password with a
// repository each, a controller and a worker. Tenant A may patch its own image with its
// own credentials (its sbomscanner Registry's authSecret); it may not push to B's
// repository nor read B's private image, through kubectl or the API; and a third
// namespace with a report but no credentials of its own does not get the workers' own.
// The registry is counted before and after: what was refused wrote nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseImageRef, type PatchJob } from "../../src/api/index.ts";
import type { AuthRegistry, Env } from "../../src/devenv/index.ts";
import { goBinary } from "../../src/devenv/index.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { startController, type RunningController } from "../../src/controller/index.ts";
import { localExecutor } from "../../src/patch/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { credentialsFrom, parseDockerConfig, RegistryClient } from "../../src/registry/index.ts";
import {
  DEFAULT_TOKEN_AUDIENCE,
  kubeAuthenticator,
  startApi,
  type RunningApi,
} from "../../src/server/index.ts";
import { startHttpServer, type RunningServer } from "../../src/util/index.ts";
import { startWorker, type RunningWorker } from "../../src/worker/index.ts";
import { kubectl } from "../support/chart.ts";
import { reportFault } from "../support/faults.ts";
import { waitForPhase } from "../support/patchjobs.ts";
import { installPolicy, namespaces, testEnv } from "../support/shared.ts";

let env: Env;
let auth: AuthRegistry;
let A: string, B: string, C: string;
let REPO_A: string, REPO_B: string;
const TAG = "bookworm-vuln";
let nc: NatsConnection;
let ctl: RunningController;
let worker: RunningWorker;
let api: RunningApi;
let http: RunningServer;
let tokenA: string;

/** The vulnerable image under another repository of the password registry (blobs mounted). */
async function copyInto(client: RegistryClient, repository: string): Promise<void> {
  const src = parseImageRef(auth.vulnerable);
  const m = await client.manifestBytes(src, auth.vulnerableDigest);
  const body = JSON.parse(Buffer.from(m.bytes).toString("utf8")) as {
    config: { digest: string };
    layers: Array<{ digest: string }>;
  };
  const dst = { registry: src.registry, repository, tag: TAG };
  for (const b of [body.config, ...body.layers]) await client.mountBlob(dst, b.digest, src);
  await client.putManifest(dst, m.mediaType, m.bytes);
}

async function revisions(repository: string): Promise<number> {
  const dir = join(
    auth.dataDir,
    "docker/registry/v2/repositories",
    repository,
    "_manifests/revisions/sha256",
  );
  return (await readdir(dir).catch(() => [])).length;
}

/** A report of the vulnerable image as it is in `repository` of the password registry. */
async function reportIn(namespace: string, name: string, repository: string) {
  const r = await honestReportForImage(env.images!.vulnerable, name, namespace);
  const im = r.imageMetadata as Record<string, string>;
  Object.assign(im, { registryURI: auth.host, repository, tag: TAG });
  assert.equal(im.digest, auth.vulnerableDigest, "the same image, byte for byte");
  await reportsApi(env.kubeConfig()).create(r);
}

async function tokenFor(namespace: string, name: string): Promise<string> {
  const kc = env.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  await rbac.createNamespacedRole({
    namespace,
    body: {
      metadata: { name },
      rules: [{ apiGroups: ["vulnpatcher.io"], resources: ["patchjobs"], verbs: ["get", "list", "create"] }],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
      subjects: [{ kind: "ServiceAccount", name, namespace }],
    },
  });
  const tr = await core.createNamespacedServiceAccountToken({
    namespace,
    name,
    body: { spec: { audiences: [DEFAULT_TOKEN_AUDIENCE], expirationSeconds: 3600 } },
  });
  return tr.status!.token!;
}

before(async () => {
  env = await testEnv();
  auth = env.authRegistry!;
  const ns = await namespaces(env, "team-a", "team-b", "team-c");
  [A, B, C] = [ns["team-a"]!, ns["team-b"]!, ns["team-c"]!];
  [REPO_A, REPO_B] = [`${A}/app`, `${B}/private`];
  const creds = parseDockerConfig(auth.dockerConfigJSON);
  const admin = new RegistryClient({ credentials: credentialsFrom(creds) });
  await copyInto(admin, REPO_A);
  await copyInto(admin, REPO_B);
  const kc = env.kubeConfig();
  // Tenant A's own credentials: a Secret, named by its sbomscanner Registry.
  await kc.makeApiClient(CoreV1Api).createNamespacedSecret({
    namespace: A,
    body: {
      metadata: { name: "registry-a" },
      type: "kubernetes.io/dockerconfigjson",
      stringData: { ".dockerconfigjson": auth.dockerConfigJSON },
    },
  });
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: "sbomscanner.kubewarden.io",
    version: "v1alpha1",
    plural: "registries",
    namespace: A,
    body: {
      apiVersion: "sbomscanner.kubewarden.io/v1alpha1",
      kind: "Registry",
      metadata: { name: "team-a" },
      spec: { uri: auth.host, authSecret: "registry-a" },
    },
  });
  await reportIn(B, "private", REPO_B); // B's: its namespace may patch it (no policy there)
  await reportIn(A, "app", REPO_A); // A's own image (its policy comes in a test below)
  nc = await connectNats({ url: env.natsURL, name: "tenants-test" });
  ctl = await startController({ kc, nc, namespaces: [A, B, C], policyNamespace: A });
  // The workers hold credentials for this registry too: lent to nobody without a grant.
  worker = await startWorker({
    kc,
    nc,
    executor: localExecutor({ copaPath: goBinary("copa") }),
    registry: new RegistryClient(),
    globalCredentials: creds,
    buildkitAddr: env.buildkitAddr,
    identity: "tenants-worker",
    consumer: { concurrency: 2, maxDeliver: 2, backoffBaseMs: 500 },
  });
  api = await startApi({ kc, auth: kubeAuthenticator(kc, [DEFAULT_TOKEN_AUDIENCE]) });
  await api.synced;
  http = await startHttpServer({ listen: "127.0.0.1:0", routes: api.routes });
  tokenA = await tokenFor(A, "alice");
});

after(async () => {
  await http?.close();
  await api?.stop();
  await worker?.stop();
  await ctl?.stop();
  await nc?.close();
  await env?.stop();
});

function manifest(name: string, image: { repository: string; digest?: string }, target?: string): string {
  return [
    "apiVersion: vulnpatcher.io/v1alpha1",
    "kind: PatchJob",
    "metadata:",
    `  name: ${name}`,
    `  namespace: ${A}`,
    "spec:",
    "  source: manual",
    "  image:",
    `    registryURI: "${auth.host}"`,
    `    repository: ${image.repository}`,
    `    tag: ${TAG}`,
    ...(image.digest ? [`    digest: "${image.digest}"`] : []),
    "    platform: linux/amd64",
    ...(target ? ["  target:", `    reference: "${target}"`] : []),
    "",
  ].join("\n");
}

test("tenants - A's PatchJobs (kubectl) to B's repository, or of B's private image, end Denied with the reason; the API refuses the same (403); B's repository is untouched", async (t) => {
  const before = { a: await revisions(REPO_A), b: await revisions(REPO_B) };
  // A reads its own image (a report of A names it) but pushes over B's tag ...
  await kubectl(
    env,
    ["apply", "-f", "-"],
    manifest(
      "push-to-b",
      { repository: REPO_A, digest: auth.vulnerableDigest },
      `${auth.host}/${REPO_B}:prod`,
    ),
  );
  // ... or copies B's private image into its own repository.
  await kubectl(
    env,
    ["apply", "-f", "-"],
    manifest(
      "read-b",
      { repository: REPO_B, digest: auth.vulnerableDigest },
      `${auth.host}/${REPO_A}:stolen`,
    ),
  );
  const push = await waitForPhase(
    env.kubeConfig(),
    A,
    "push-to-b",
    ["Denied", "Queued", "Running", "Succeeded", "Failed"],
    60_000,
  );
  const read = await waitForPhase(
    env.kubeConfig(),
    A,
    "read-b",
    ["Denied", "Queued", "Running", "Succeeded", "Failed"],
    60_000,
  );
  assert.deepEqual(
    [push.status?.phase, push.status?.reason],
    ["Denied", "TargetNotAllowed"],
    push.status?.message,
  );
  assert.match(
    push.status!.message!,
    new RegExp(
      `may push patches only to the repository each image came from .*not ${auth.host}/${REPO_B}.*TenantGrant`,
    ),
  );
  assert.deepEqual(
    [read.status?.phase, read.status?.reason],
    ["Denied", "SourceNotAllowed"],
    read.status?.message,
  );
  assert.match(read.status!.message!, new RegExp(`none names ${auth.host}/${REPO_B}@sha256`));
  for (const pj of [push, read])
    assert.equal(pj.status?.attempts, undefined, `${pj.metadata.name}: never claimed by a worker`);
  // The API: the same refusal, before anything is created.
  const res = await fetch(`${http.url}/api/v1/namespaces/${A}/patchjobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${tokenA}`, "content-type": "application/json" },
    body: JSON.stringify({ image: `${auth.host}/${REPO_B}:${TAG}` }),
  });
  const body = (await res.json()) as { error: string; reason: string };
  assert.equal(res.status, 403, JSON.stringify(body));
  assert.equal(body.reason, "SourceNotAllowed");
  const listed = (await (
    await fetch(`${http.url}/api/v1/namespaces/${A}/patchjobs`, {
      headers: { authorization: `Bearer ${tokenA}` },
    })
  ).json()) as {
    items: Array<{ name: string }>;
  };
  assert.ok(!listed.items.some((i) => i.name.startsWith("manual-private")), "the API created nothing");
  const after = { a: await revisions(REPO_A), b: await revisions(REPO_B) };
  assert.equal(after.b, before.b, "B's repository holds exactly the manifests it held");
  reportFault(t, {
    fault: "tenant-crossing",
    injected: `tenant ${A}: a PatchJob pushing to ${REPO_B}:prod, one reading ${REPO_B}, and the API asked for ${REPO_B}`,
    expected: "Denied (TargetNotAllowed, SourceNotAllowed) and 403, never claimed, B's manifests unchanged",
    observed: `${push.status?.phase}/${push.status?.reason}, ${read.status?.phase}/${read.status?.reason}, API ${res.status} ${body.reason}; ${REPO_B} manifests ${before.b} -> ${after.b}`,
  });
});

test("tenants - A's own report is patched with A's own credentials (its sbomscanner Registry's authSecret): Succeeded, one new manifest in A's repository", async () => {
  const before = { a: await revisions(REPO_A), b: await revisions(REPO_B) };
  await installPolicy(env, A);
  const pj: PatchJob = await waitForPhase(
    env.kubeConfig(),
    A,
    "app",
    ["Succeeded", "Failed", "NoOp", "Denied"],
    300_000,
  );
  assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
  assert.equal(pj.status?.patchedImage?.reference, `${auth.host}/${REPO_A}:${TAG}-patched`);
  assert.equal(await revisions(REPO_A), before.a + 1, "exactly one new image, in A's repository");
  assert.equal(await revisions(REPO_B), before.b);
});

test("tenants - a namespace with a report but no credentials of its own does not get the workers' own: Failed, CredentialsNotAllowed, nothing pushed", async (t) => {
  const before = await revisions(REPO_A);
  await installPolicy(env, C);
  await reportIn(C, "app", REPO_A);
  const pj = await waitForPhase(
    env.kubeConfig(),
    C,
    "app",
    ["Succeeded", "Failed", "NoOp", "Denied"],
    300_000,
  );
  assert.deepEqual(
    [pj.status?.phase, pj.status?.reason],
    ["Failed", "CredentialsNotAllowed"],
    pj.status?.message,
  );
  assert.match(
    pj.status!.message!,
    new RegExp(
      `namespace ${C} has no credentials of its own for ${auth.host}.*TenantGrant with globalCredentials`,
    ),
  );
  assert.equal(await revisions(REPO_A), before, "nothing pushed");
  reportFault(t, {
    fault: "credentials-not-lent",
    injected: `namespace ${C}: a report of ${REPO_A}, no Secret or Registry of its own; the workers hold credentials for ${auth.host}`,
    expected: "the workers' credentials are not used: Failed CredentialsNotAllowed, nothing pushed",
    observed: `${pj.status?.phase}/${pj.status?.reason}: ${pj.status?.message?.slice(0, 160)}`,
  });
});
