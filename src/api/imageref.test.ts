import { test } from "node:test";
import assert from "node:assert/strict";
import { parseImageRef, formatImageRef, InvalidImageRefError } from "./imageref.ts";
import { isPatchedTag, patchedTag, patchJobNameForImage, sourceRef, targetRef } from "../decide/index.ts";

const good: Array<[string, ReturnType<typeof parseImageRef>]> = [
  ["debian", { registry: "docker.io", repository: "library/debian", tag: "latest" }],
  ["debian:12", { registry: "docker.io", repository: "library/debian", tag: "12" }],
  ["kubewarden/sbomscanner:v1", { registry: "docker.io", repository: "kubewarden/sbomscanner", tag: "v1" }],
  ["ghcr.io/a/b/c:1.0", { registry: "ghcr.io", repository: "a/b/c", tag: "1.0" }],
  [
    "127.0.0.1:5000/library/debian:bookworm-vuln",
    { registry: "127.0.0.1:5000", repository: "library/debian", tag: "bookworm-vuln" },
  ],
  [
    "localhost/x@sha256:" + "a".repeat(64),
    { registry: "localhost", repository: "x", digest: "sha256:" + "a".repeat(64) },
  ],
  [
    "r.io/x:t@sha256:" + "b".repeat(64),
    { registry: "r.io", repository: "x", tag: "t", digest: "sha256:" + "b".repeat(64) },
  ],
];
for (const [ref, want] of good) {
  test(`imageref - parses ${ref}`, () => {
    assert.deepEqual(parseImageRef(ref), want);
    assert.deepEqual(parseImageRef(formatImageRef(want)), want, "round trip");
  });
}

const bad = [
  "",
  "UPPER/case",
  "a b",
  "x:tag with space",
  "x@sha256:short",
  "-x/y",
  "r.io/x;rm -rf /",
  "x:$(id)",
  "x\nother",
  "a".repeat(600),
];
for (const ref of bad) {
  test(`imageref - rejects ${JSON.stringify(ref.slice(0, 30))}`, () => {
    assert.throws(() => parseImageRef(ref), InvalidImageRefError);
  });
}

test("naming - patched tag and our own output", () => {
  assert.equal(patchedTag("1.0"), "1.0-patched");
  assert.equal(patchedTag(undefined), "latest-patched");
  assert.equal(patchedTag("1.0", "-fixed"), "1.0-fixed");
  assert.throws(() => patchedTag("x".repeat(127)));
  assert.ok(isPatchedTag("1.0-patched"));
  assert.ok(!isPatchedTag("1.0"));
  assert.ok(!isPatchedTag(undefined));
});

test("naming - target and source references", () => {
  const image = {
    registryURI: "r.io:5000",
    repository: "a/b",
    tag: "1",
    digest: "sha256:" + "c".repeat(64),
    platform: "linux/amd64",
  };
  assert.deepEqual(targetRef({ image }), { registry: "r.io:5000", repository: "a/b", tag: "1-patched" });
  assert.deepEqual(targetRef({ image, target: { tagSuffix: "-x" } }), {
    registry: "r.io:5000",
    repository: "a/b",
    tag: "1-x",
  });
  assert.deepEqual(targetRef({ image, target: { reference: "other.io/p/q:z" } }), {
    registry: "other.io",
    repository: "p/q",
    tag: "z",
  });
  assert.throws(() => targetRef({ image, target: { reference: "other.io/p/q@sha256:" + "d".repeat(64) } }));
  assert.equal(formatImageRef(sourceRef({ image })), `r.io:5000/a/b:1@sha256:${"c".repeat(64)}`);
});

test("naming - PatchJob names for images are stable DNS names", () => {
  const img = {
    registryURI: "r.io",
    repository: "Library/Some_Thing",
    digest: "sha256:" + "e".repeat(64),
    platform: "linux/amd64",
  };
  const a = patchJobNameForImage("manual", img);
  assert.equal(a, patchJobNameForImage("manual", { ...img }));
  assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(a.length <= 63);
  assert.notEqual(a, patchJobNameForImage("manual", { ...img, platform: "linux/arm64" }));
});
