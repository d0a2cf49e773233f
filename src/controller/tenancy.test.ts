import { test } from "node:test";
import assert from "node:assert/strict";
import { type PatchJob, parseReport, Reason, Source, type TenantGrant } from "../api/index.ts";
import { reportFacts, type ReportSummary } from "../decide/index.ts";
import type { Store } from "../kube/index.ts";
import { debianReport, clone } from "../../test/fixtures/reports.ts";
import type { NamespaceLabels } from "./caches.ts";
import { ReportImages, Tenancy } from "./tenancy.ts";

function mapStore<T>(m: Map<string, T>): Store<T> {
  return {
    get: (k: string) => m.get(k),
    values: () => m.values(),
    get size() {
      return m.size;
    },
  };
}

function summary(
  namespace: string,
  o: { repository?: string; tag?: string; digest?: string; indexDigest?: string } = {},
): ReportSummary {
  const raw = clone(debianReport()) as Record<string, any>;
  raw.metadata.namespace = namespace;
  Object.assign(raw.imageMetadata, o);
  const p = parseReport(raw);
  assert.ok(p.ok);
  return { deleting: false, facts: reportFacts(p.value) };
}

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const IDX = `sha256:${"9".repeat(64)}`;

function pj(
  namespace: string,
  image: Partial<NonNullable<PatchJob["spec"]["image"]>>,
  target?: string,
): PatchJob {
  return {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "PatchJob",
    metadata: { name: "p", namespace },
    spec: {
      source: Source.Manual,
      image: {
        registryURI: "127.0.0.1:5000",
        repository: "library/debian",
        platform: "linux/amd64",
        ...image,
      },
      ...(target ? { target: { reference: target } } : {}),
    },
  };
}

test("tenancy state - report images: by namespace, digest, index digest or tag; an update or delete forgets the old image", () => {
  const images = new ReportImages();
  images.set("a/r1", summary("a", { tag: "1", digest: D1, indexDigest: IDX }));
  const name = { registry: "127.0.0.1:5000", repository: "library/debian" };
  assert.equal(images.names("a", { ...name, digest: D1 }), true);
  assert.equal(
    images.names("a", { ...name, digest: IDX }),
    true,
    "an index is named by its platforms' reports",
  );
  assert.equal(images.names("a", { ...name, tag: "1" }), true);
  assert.equal(
    images.names("b", { ...name, digest: D1 }),
    false,
    "another namespace's report names nothing here",
  );
  assert.equal(images.names("a", { ...name, digest: D2 }), false);
  // The report now names another digest: the old one is forgotten.
  images.set(
    "a/r1",
    summary("a", { tag: "1", digest: D2 }),
    summary("a", { tag: "1", digest: D1, indexDigest: IDX }),
  );
  assert.equal(images.names("a", { ...name, digest: D1 }), false);
  assert.equal(images.names("a", { ...name, digest: D2 }), true);
  images.delete("a/r1", summary("a", { tag: "1", digest: D2 }));
  assert.equal(images.names("a", { ...name, digest: D2 }), false);
  assert.equal(images.names("a", { ...name, tag: "1" }), false);
});

test("tenancy state - grants by namespace labels; a grant change is seen after invalidate(); a global policy's target counts", () => {
  const grants = new Map<string, TenantGrant>();
  const nss = new Map<string, NamespaceLabels>([["team-a", { name: "team-a", labels: { team: "a" } }]]);
  const images = new ReportImages();
  images.set("team-a/r", summary("team-a", { tag: "1", digest: D1 }));
  const policy: { target?: string } = {};
  const t = new Tenancy({
    grants: mapStore(grants),
    namespaces: mapStore(nss),
    images,
    globalPolicyTarget: () => policy.target,
  });
  const mirror = pj("team-a", { tag: "1", digest: D1 }, "127.0.0.1:5000/mirror/debian:1-patched");
  const v = t.verdict(mirror);
  assert.deepEqual([v.ok, !v.ok && v.reason], [false, Reason.TargetNotAllowed]);
  grants.set("g", {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "TenantGrant",
    metadata: { name: "g" },
    spec: { namespaceSelector: { matchLabels: { team: "a" } }, targets: ["127\\.0\\.0\\.1:5000/mirror/.*"] },
  });
  assert.equal(t.verdict(mirror).ok, false, "compiled grants are kept until invalidated");
  t.invalidate();
  assert.equal(t.verdict(mirror).ok, true);
  assert.equal(
    t.verdict(pj("team-b", { tag: "1", digest: D1 })).ok,
    false,
    "team-b has no report and no grant",
  );
  grants.clear();
  t.invalidate();
  policy.target = "127.0.0.1:5000/mirror/debian";
  assert.equal(t.verdict(mirror).ok, true, "where a global policy sends the image");
  grants.set("bad", {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: "TenantGrant",
    metadata: { name: "bad" },
    spec: { namespaces: ["team-a"], sources: ["(("] },
  });
  t.invalidate();
  assert.deepEqual([...t.compiled().invalid.keys()], ["bad"], "a bad grant grants nothing and is reported");
});
