// The kubernetes executor: the Job it writes, checked field by field. Its real runs (a
// patch through a Job Pod on a real node, and a failing Job Pod) are in
// test/cluster/cluster.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  buildJob,
  jobName,
  MANIFEST_DIR,
  VEX_DIR,
  DOCKER_CONFIG_DIR,
  CERTS_DIR,
  manifestFiles,
} from "./kubernetes.ts";
import { copaArgv } from "./argv.ts";
import { parseImageRef } from "../api/index.ts";
import type { CopaRequest } from "./executor.ts";

const manifest = {
  apiVersion: "v1alpha1" as const,
  metadata: { os: { type: "debian", version: "12" }, config: { arch: "amd64" } },
  updates: [{ name: "liblzma5", installedVersion: "1", fixedVersion: "2", vulnerabilityID: "CVE-1" }],
};
const owner = {
  apiVersion: "vulnpatcher.io/v1alpha1",
  kind: "PatchJob",
  name: "my-pj",
  uid: "11111111-2222-3333-4444-555555555555",
};

function request(extra: Partial<CopaRequest> = {}): CopaRequest {
  return {
    id: "my-pj-3",
    manifest,
    timeoutMs: 600_000,
    owner,
    namespace: "team-a",
    args: (p) =>
      copaArgv({
        image: parseImageRef("registry.example:5000/library/debian:12@sha256:" + "a".repeat(64)),
        target: parseImageRef("registry.example:5000/library/debian:12-patched"),
        buildkitAddr: "tcp://buildkitd.vuln-patcher:1234",
        manifestPath: p.manifest,
        vexPath: p.vex,
        timeout: "9m",
        tls: { caCert: `${CERTS_DIR}/ca.crt`, cert: `${CERTS_DIR}/tls.crt`, key: `${CERTS_DIR}/tls.key` },
      }),
    ...extra,
  };
}

test("kubernetes executor - the Job: argv, mounts, deadlines, owner, restricted security", () => {
  const job = buildJob(
    {
      kc: undefined as never,
      image: "ghcr.io/example/copa-runner:0.14.2",
      buildkitTLSSecret: "buildkit-client",
    },
    { ...request(), dockerConfig: '{"auths":{"registry.example:5000":{"auth":"dTpw"}}}' },
    "team-a",
  );
  assert.equal(job.metadata?.name, jobName("my-pj-3"));
  assert.match(job.metadata!.name!, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(job.metadata!.name!.length <= 63);
  assert.equal(job.metadata?.namespace, "team-a");
  assert.deepEqual(job.metadata?.ownerReferences, [{ ...owner, controller: true, blockOwnerDeletion: true }]);
  assert.equal(job.spec?.backoffLimit, 0);
  assert.equal(job.spec?.activeDeadlineSeconds, 600);
  assert.equal(job.spec?.ttlSecondsAfterFinished, 3600);
  const pod = job.spec!.template.spec!;
  assert.equal(pod.restartPolicy, "Never");
  assert.equal(pod.automountServiceAccountToken, false);
  assert.deepEqual(pod.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    fsGroup: 65532,
    seccompProfile: { type: "RuntimeDefault" },
  });
  const c = pod.containers[0]!;
  assert.deepEqual(c.command, ["copa"]);
  assert.deepEqual(c.args, [
    "patch",
    "--image",
    "registry.example:5000/library/debian:12@sha256:" + "a".repeat(64),
    "--tag",
    "registry.example:5000/library/debian:12-patched",
    "--addr",
    "tcp://buildkitd.vuln-patcher:1234",
    "--timeout",
    "9m",
    "--report",
    `${MANIFEST_DIR}/manifest.json`,
    "--scanner",
    "native",
    "--format",
    "openvex",
    "--output",
    `${VEX_DIR}/vex.json`,
    "--push",
    "--cacert",
    `${CERTS_DIR}/ca.crt`,
    "--cert",
    `${CERTS_DIR}/tls.crt`,
    "--key",
    `${CERTS_DIR}/tls.key`,
  ]);
  assert.deepEqual(c.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  });
  assert.deepEqual(c.env, [
    { name: "HOME", value: "/tmp" },
    { name: "DOCKER_CONFIG", value: DOCKER_CONFIG_DIR },
  ]);
  const mounts = Object.fromEntries(c.volumeMounts!.map((m) => [m.name, m.mountPath]));
  assert.deepEqual(mounts, {
    out: VEX_DIR,
    tmp: "/tmp",
    manifest: MANIFEST_DIR,
    "docker-config": DOCKER_CONFIG_DIR,
    "buildkit-certs": CERTS_DIR,
  });
  const vols = Object.fromEntries(pod.volumes!.map((v) => [v.name, v]));
  // The run's own Secret (named like the Job, created with it): the tenant's credentials.
  assert.deepEqual(vols["docker-config"]?.secret, {
    secretName: job.metadata?.name,
    items: [{ key: "config.json", path: "config.json" }],
  });
  assert.equal(vols.manifest?.configMap?.name, job.metadata?.name);
  assert.equal(vols["buildkit-certs"]?.secret?.secretName, "buildkit-client");
  // No secret value anywhere in the Job: only references.
  assert.doesNotMatch(JSON.stringify(job), /password|auth"|dTpw/i);
});

test("kubernetes executor - without credentials of its own a run mounts none; the worker's TLS files go into the run's Secret", () => {
  const bare = buildJob({ kc: undefined as never, image: "copa:1" }, request(), "team-a");
  const c = bare.spec!.template.spec!.containers[0]!;
  assert.deepEqual(c.env, [{ name: "HOME", value: "/tmp" }], "no DOCKER_CONFIG: copa runs anonymous");
  const job = buildJob(
    {
      kc: undefined as never,
      image: "copa:1",
      buildkitTLSFiles: { caCert: "/c/ca", cert: "/c/crt", key: "/c/key" },
    },
    request(),
    "team-a",
  );
  const certs = job.spec!.template.spec!.volumes!.find((v) => v.name === "buildkit-certs");
  assert.deepEqual(certs?.secret, {
    secretName: job.metadata?.name,
    items: ["ca.crt", "tls.crt", "tls.key"].map((k) => ({ key: k, path: k })),
  });
});

test("kubernetes executor - a Job outside its PatchJob's namespace has no owner (owners must be local) but says whose it is", () => {
  const job = buildJob({ kc: undefined as never, image: "copa:1" }, request(), "vuln-patcher");
  assert.equal(job.metadata?.ownerReferences, undefined);
  assert.equal(job.metadata?.labels?.["vulnpatcher.io/patchjob"], "my-pj");
  assert.equal(job.metadata?.labels?.["vulnpatcher.io/patchjob-namespace"], "team-a");
});

test("kubernetes executor - update-all mode has no manifest volume and no report flags", () => {
  const job = buildJob({ kc: undefined as never, image: "copa:1" }, request({ manifest: undefined }), "ns");
  const c = job.spec!.template.spec!.containers[0]!;
  assert.ok(!c.args!.includes("--report"));
  assert.ok(!c.volumeMounts!.some((m) => m.name === "manifest"));
  assert.ok(!c.env!.some((e) => e.name === "DOCKER_CONFIG"));
});

test("kubernetes executor - a multi-arch patch mounts one manifest file per platform as copa's report directory, and no VEX", () => {
  const arm = { ...manifest, metadata: { ...manifest.metadata, config: { arch: "arm64" } } };
  const req = request({
    manifest: undefined,
    manifests: { "linux-amd64.json": manifest, "linux-arm64.json": arm },
  });
  const job = buildJob({ kc: undefined as never, image: "copa:1" }, req, "ns");
  const c = job.spec!.template.spec!.containers[0]!;
  const i = c.args!.indexOf("--report");
  assert.equal(c.args![i + 1], MANIFEST_DIR, "the directory, not a file in it");
  assert.ok(!c.args!.includes("--output"), "no VEX document in report-directory mode");
  assert.ok(c.volumeMounts!.some((m) => m.name === "manifest" && m.mountPath === MANIFEST_DIR));
  const files = manifestFiles(req);
  assert.deepEqual(Object.keys(files).sort(), ["linux-amd64.json", "linux-arm64.json"]);
  assert.equal(JSON.parse(files["linux-arm64.json"]!).metadata.config.arch, "arm64");
  assert.throws(
    () => manifestFiles({ manifests: { "../escape.json": manifest } }),
    /invalid manifest file name/,
  );
});

test("kubernetes executor - copa's proxy settings and a run's own environment reach the copa container", () => {
  const job = buildJob(
    {
      kc: undefined as never,
      image: "copa:1",
      env: { HTTPS_PROXY: "http://10.244.0.1:80", NO_PROXY: ".svc,10.0.0.0/8" },
    },
    { ...request(), env: { COPA_EXPERIMENTAL: "1" } },
    "team-a",
  );
  const env = job.spec!.template.spec!.containers[0]!.env!;
  assert.deepEqual(
    env.filter((e) => e.name !== "HOME" && e.name !== "DOCKER_CONFIG").map((e) => [e.name, e.value]),
    [
      ["HTTPS_PROXY", "http://10.244.0.1:80"],
      ["NO_PROXY", ".svc,10.0.0.0/8"],
      ["COPA_EXPERIMENTAL", "1"],
    ],
  );
});
