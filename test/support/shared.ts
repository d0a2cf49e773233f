// The integration lane's shared environment. The lanes runner (test/run.ts) starts one
// (etcd, kube-apiserver, kube-controller-manager, registry, BuildKit, the seeded
// images) and names its endpoints in an environment variable; each test file attaches
// to it with a NATS server of its own, and keeps to its own namespace and image
// repository. A file run on its own (npm run test:only) starts a whole environment.
import { readFileSync, writeFileSync } from "node:fs";
import { CoreV1Api } from "@kubernetes/client-node";
import { attachEnv, setup, type Endpoints, type Env, type EnvOptions } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import { parseImageRef, type ImageRef } from "../../src/api/index.ts";
import {
  defaultPolicy,
  GRANT_PLURAL,
  POLICY_PLURAL,
  type PatchPolicySpec,
  type TenantGrantSpec,
} from "../../src/api/index.ts";
import { CustomObjectsApi } from "@kubernetes/client-node";

export const SHARED_ENV_VAR = "VP_SHARED_ENV";

/** What the shared environment runs: everything the integration files need. */
export function sharedEnvOptions(): EnvOptions {
  // A registry that asks for a password too: tenants with credentials of their own.
  return { buildkit: true, authRegistry: true };
}

export function writeSharedEnv(file: string, env: Env): void {
  writeFileSync(file, JSON.stringify(env.endpoints()), { mode: 0o600 });
}

/**
 * This file's environment: the shared one (with a NATS of its own) when the lanes
 * runner started one, else a new one. The caller stops it (`after(() => env.stop())`):
 * for the shared one that stops only what is the file's own.
 */
export async function testEnv(o: { nats?: boolean } = {}): Promise<Env> {
  const file = process.env[SHARED_ENV_VAR];
  let env: Env;
  if (file) env = await attachEnv(JSON.parse(readFileSync(file, "utf8")) as Endpoints, o);
  else {
    env = await setup({ ...sharedEnvOptions(), nats: o.nats ?? true });
    await installAllCRDs(env.kubeConfig(), { defaultPolicy: false });
  }
  return env;
}

/** A suffix unique to this process: namespaces of files running at once never meet. */
const SUFFIX = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;

/** Namespaces of this file's own, created now: name -> `name-<suffix>`. */
export async function namespaces(env: Env, ...names: string[]): Promise<Record<string, string>> {
  const core = env.kubeConfig().makeApiClient(CoreV1Api);
  const out: Record<string, string> = {};
  for (const n of names) {
    const ns = `${n}-${SUFFIX}`.slice(0, 63);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    out[n] = ns;
  }
  return out;
}

/**
 * The chart's default policy (patch every fixable report) in `namespace`: for that
 * namespace only, or (global) for every namespace a controller whose own namespace it is watches.
 */
export async function installPolicy(
  env: Env,
  namespace: string,
  o: { global?: boolean; spec?: Partial<PatchPolicySpec> } = {},
): Promise<void> {
  const p = defaultPolicy(namespace);
  await env
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: POLICY_PLURAL,
      namespace,
      body: { ...p, spec: { ...p.spec, allNamespaces: !!o.global, ...o.spec } },
    });
}

/**
 * What an administrator allows a namespace beyond its own reports' images (a
 * cluster-scoped TenantGrant named `grant-<namespace>`); `*` allows everything,
 * the workers' own credentials included.
 */
export async function installGrant(
  env: Env,
  namespace: string,
  spec: Omit<TenantGrantSpec, "namespaces"> | "*",
): Promise<void> {
  const body = {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "TenantGrant",
    metadata: { name: `grant-${namespace}` },
    spec: {
      namespaces: [namespace],
      ...(spec === "*" ? { sources: [".*"], targets: [".*"], globalCredentials: true } : spec),
    },
  };
  await env
    .kubeConfig()
    .makeApiClient(CustomObjectsApi)
    .createClusterCustomObject({ group: "vulnpatcher.io", version: "v1alpha1", plural: GRANT_PLURAL, body });
}

/**
 * The vulnerable image under a repository of this file's own (same digest: its blobs
 * are mounted, not copied), so files patching at once never push to each other's tags.
 */
export async function ownImage(
  env: Env,
  repository: string,
): Promise<{ ref: string; digest: string; image: ImageRef }> {
  const src = parseImageRef(env.images!.vulnerable);
  const reg = new RegistryClient();
  const m = await reg.manifestBytes(src, env.images!.vulnerableDigest);
  const body = JSON.parse(Buffer.from(m.bytes).toString("utf8")) as {
    config: { digest: string };
    layers: Array<{ digest: string }>;
  };
  const image: ImageRef = { registry: src.registry, repository, tag: src.tag };
  for (const b of [body.config, ...body.layers]) await reg.mountBlob(image, b.digest, src);
  const digest = await reg.putManifest(image, m.mediaType, m.bytes);
  return { ref: `${src.registry}/${repository}:${src.tag}`, digest, image };
}
