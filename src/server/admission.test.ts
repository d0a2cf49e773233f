// The webhook's decision with a stand-in for cosign (a simulation: which references
// verify is given); the webhook against the real apiserver and cosign is in
// test/integration/signing.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { admissionHandler } from "./admission.ts";

const review = (images: string[], kind = "Pod") => ({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: "u-1",
    kind: { kind },
    object: {
      spec: { containers: images.map((image) => ({ image })), initContainers: [{ image: "r/init:1" }] },
    },
  },
});

test("admission: only images matching the patterns are checked; one unsigned refuses the Pod with its reason", async () => {
  const checked: string[] = [];
  const handle = admissionHandler({
    key: "cosign.pub",
    images: [".*-patched"],
    verify: async (ref) => {
      checked.push(ref);
      if (ref.includes("bad")) throw new Error("no signatures found");
    },
  });
  const ok = await handle(review(["r/a:1-patched", "r/plain:1"]));
  assert.deepEqual(ok.response, { uid: "u-1", allowed: true });
  assert.deepEqual(checked, ["r/a:1-patched"], "r/plain:1 and the init image match no pattern");
  const no = await handle(review(["r/a:1-patched", "r/bad:1-patched"]));
  assert.equal(no.response.allowed, false);
  assert.match(no.response.status!.message, /r\/bad:1-patched: no signatures found/);
  assert.deepEqual(checked, ["r/a:1-patched", "r/bad:1-patched"], "a verdict is cached: r/a checked once");
});

test("admission: not a Pod -> allowed unchecked; not a review -> an error", async () => {
  const handle = admissionHandler({
    key: "k",
    images: [".*"],
    verify: async () => assert.fail("not called"),
  });
  assert.equal((await handle(review(["x-patched"], "Deployment"))).response.allowed, true);
  await assert.rejects(handle({}), /not an AdmissionReview/);
});
