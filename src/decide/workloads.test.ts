// Which workloads run the source image, and which a rollout leaves alone (issue 21's first
// slice; pure, plain values).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseImageRef } from "../api/index.ts";
import { matchWorkloads, type WorkloadFacts } from "./workloads.ts";

const D = `sha256:${"a".repeat(64)}`;
const source = { ...parseImageRef("registry.example/team/web:1.0"), digest: D };
const w = (over: Partial<WorkloadFacts> & Pick<WorkloadFacts, "name">): WorkloadFacts => ({
  kind: "Deployment",
  namespace: "team",
  containers: [{ name: "app", image: "registry.example/team/web:1.0" }],
  ...over,
});

test("workloads: by tag, by digest, by the image ID its Pods report; another tag, repository or namespace is not it", () => {
  const got = matchWorkloads(source, "team", [
    w({ name: "by-tag" }),
    w({
      name: "by-digest",
      kind: "StatefulSet",
      containers: [{ name: "db", image: `registry.example/team/web@${D}` }],
    }),
    w({
      name: "moving-tag",
      kind: "DaemonSet",
      containers: [{ name: "agent", image: "registry.example/team/web:latest" }],
      imageIDs: { agent: [`registry.example/team/web@${D}`] },
    }),
    w({ name: "other-tag", containers: [{ name: "app", image: "registry.example/team/web:2.0" }] }),
    w({ name: "other-repo", containers: [{ name: "app", image: "registry.example/team/api:1.0" }] }),
    w({ name: "elsewhere", namespace: "other" }),
    w({
      name: "cron",
      kind: "CronJob",
      containers: [{ name: "init", image: "registry.example/team/web:1.0", init: true }],
    }),
  ]);
  assert.deepEqual(
    got.map((m) => `${m.kind}/${m.name}/${m.container} ${m.state}`),
    [
      "CronJob/cron/init Planned",
      "DaemonSet/moving-tag/agent Planned",
      "Deployment/by-tag/app Planned",
      "StatefulSet/by-digest/db Planned",
    ],
  );
});

test("workloads: opted out, Argo CD, Flux and bare Pods are Skipped with why; owned Pods are their workload's", () => {
  const got = matchWorkloads(source, "team", [
    w({ name: "no", annotations: { "vulnpatcher.io/rollout": "false" } }),
    w({ name: "argo", labels: { "argocd.argoproj.io/instance": "shop" } }),
    w({ name: "flux", labels: { "kustomize.toolkit.fluxcd.io/name": "apps" } }),
    w({ name: "bare", kind: "Pod" }),
    w({ name: "web-7d9f-abcde", kind: "Pod", owned: true }),
  ]);
  assert.deepEqual(
    got.map((m) => [m.name, m.state, m.reason]),
    [
      ["argo", "Skipped", "GitOpsManaged"],
      ["flux", "Skipped", "GitOpsManaged"],
      ["no", "Skipped", "OptedOut"],
      ["bare", "Skipped", "BarePod"],
    ],
  );
  assert.match(got.find((m) => m.name === "argo")!.message!, /Argo CD.*image@digest into Git/);
});

test("workloads: the policy's kinds and labels select", () => {
  const got = matchWorkloads(
    source,
    "team",
    [
      w({ name: "web", labels: { tier: "front" } }),
      w({ name: "batch", kind: "CronJob", labels: { tier: "front" } }),
      w({ name: "api" }),
    ],
    { kinds: ["Deployment"], matchLabels: { tier: "front" } },
  );
  assert.deepEqual(
    got.map((m) => [m.name, m.state, m.reason]),
    [
      ["batch", "Skipped", "KindNotSelected"],
      ["api", "Skipped", "NotSelected"],
      ["web", "Planned", undefined],
    ],
  );
});

test("workloads: sbomscanner's WorkloadScanReport maps a container named another way (a mirror's host) to the source", () => {
  const got = matchWorkloads(source, "team", [
    w({
      name: "via-mirror",
      containers: [{ name: "app", image: "mirror.local/team/web:1.0" }],
      scanned: { app: { registry: "registry.example", repository: "team/web", tag: "1.0" } },
    }),
    w({
      name: "registry-unknown",
      containers: [{ name: "app", image: "mirror.local/team/web:1.0" }],
      scanned: { app: { repository: "team/web", tag: "1.0" } },
    }),
    w({
      name: "other-registry",
      containers: [{ name: "app", image: "mirror.local/team/web:1.0" }],
      scanned: { app: { registry: "elsewhere.example", repository: "team/web", tag: "1.0" } },
    }),
    w({ name: "not-scanned", containers: [{ name: "app", image: "mirror.local/team/web:1.0" }] }),
  ]);
  assert.deepEqual(
    got.map((m) => `${m.name} ${m.state}`),
    ["registry-unknown Planned", "via-mirror Planned"],
  );
});
