import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../kube/index.ts";
import {
  audienceAccepted,
  bearerToken,
  cachingAuthenticator,
  type Access,
  type Caller,
  type Reviews,
} from "./auth.ts";

function fakeReviews(users: Record<string, Caller>, allow: (c: Caller, a: Access) => boolean) {
  const calls = { token: [] as string[], access: 0, audiences: [] as Array<string[] | undefined> };
  const reviews: Reviews = {
    async tokenReview(token, audiences) {
      calls.token.push(token);
      calls.audiences.push(audiences);
      return users[token];
    },
    async accessReview(c, a) {
      calls.access++;
      return allow(c, a);
    },
  };
  return { reviews, calls };
}

const ALICE: Caller = { username: "alice", groups: ["team-a"] };
const LIST: Access = { verb: "list", group: "vulnpatcher.io", resource: "patchjobs", namespace: "team-a" };

test("auth - a token is reviewed once per TTL; a refused one is cached too (no TokenReview flood)", async () => {
  const clock = new FakeClock();
  const { reviews, calls } = fakeReviews({ good: ALICE }, () => true);
  const auth = cachingAuthenticator(reviews, { ttlMs: 10_000, clock, audiences: ["vuln-patcher"] });
  assert.deepEqual(await auth.authenticate("good"), ALICE);
  assert.deepEqual(await auth.authenticate("good"), ALICE);
  for (let i = 0; i < 100; i++) assert.equal(await auth.authenticate("bad"), undefined);
  assert.deepEqual(calls.token, ["good", "bad"]);
  assert.deepEqual(calls.audiences, [["vuln-patcher"], ["vuln-patcher"]], "the audience is asked for");
  clock.advance(10_000);
  await auth.authenticate("good");
  assert.deepEqual(calls.token, ["good", "bad", "good"], "after the TTL the apiserver is asked again");
});

test("auth - access decisions are per caller and per exact access, cached for the TTL", async () => {
  const clock = new FakeClock();
  const { reviews, calls } = fakeReviews(
    {},
    (c, a) => c.username === "alice" && a.verb === "list" && a.namespace === "team-a",
  );
  const auth = cachingAuthenticator(reviews, { ttlMs: 1000, clock });
  assert.equal(await auth.allowed(ALICE, LIST), true);
  assert.equal(await auth.allowed(ALICE, LIST), true);
  assert.equal(await auth.allowed(ALICE, { ...LIST, verb: "create" }), false);
  assert.equal(await auth.allowed({ ...ALICE, username: "mallory" }, LIST), false);
  assert.equal(await auth.allowed(ALICE, { ...LIST, namespace: "team-b" }), false);
  assert.equal(calls.access, 4);
  clock.advance(1000);
  await auth.allowed(ALICE, LIST);
  assert.equal(calls.access, 5);
});

test("auth - the cache is bounded: expired entries are pruned when it is full", async () => {
  const clock = new FakeClock();
  const { reviews, calls } = fakeReviews({}, () => false);
  const auth = cachingAuthenticator(reviews, { ttlMs: 100, maxEntries: 3, clock });
  for (const t of ["a", "b", "c"]) await auth.authenticate(t);
  clock.advance(100);
  await auth.authenticate("d");
  await auth.authenticate("a");
  assert.deepEqual(calls.token, ["a", "b", "c", "d", "a"]);
});

test("auth - bearer tokens: the scheme is case-insensitive, anything else is no token", () => {
  assert.equal(bearerToken("Bearer abc.def"), "abc.def");
  assert.equal(bearerToken("bearer  abc "), "abc");
  for (const h of [undefined, "", "Basic YWxpY2U6cHc=", "Bearer", "Bearer a b", "Token abc"])
    assert.equal(bearerToken(h), undefined, String(h));
});

test("auth - a TokenReview asked for our audience must answer with it; an empty answer is the apiserver's own audience", () => {
  assert.equal(audienceAccepted(["vuln-patcher"], ["vuln-patcher"]), true);
  assert.equal(audienceAccepted(["vuln-patcher"], []), false);
  assert.equal(audienceAccepted(["vuln-patcher"], undefined), false);
  assert.equal(audienceAccepted(["vuln-patcher"], ["https://kubernetes.default.svc"]), false);
  assert.equal(audienceAccepted(undefined, undefined), true, "no audience asked: the apiserver's own");
  assert.equal(audienceAccepted([], ["x"]), true);
});
