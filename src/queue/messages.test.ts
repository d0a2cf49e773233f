import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BadMessageError,
  SUBJECT_PREFIX,
  decodeRequest,
  encodeRequest,
  msgIdFor,
  subjectFor,
} from "./messages.ts";

const REQ = { namespace: "team-a", name: "bookworm", uid: "0b6e6f2c-1", generation: 3 };

test("messages - a request is a reference: exactly namespace, name, uid and generation, round-tripped", () => {
  const wire = encodeRequest({ ...REQ, spec: { image: "x" } } as typeof REQ);
  assert.deepEqual(JSON.parse(wire), REQ, "nothing but the reference goes on the wire");
  assert.deepEqual(decodeRequest(new TextEncoder().encode(wire)), REQ);
  assert.deepEqual(decodeRequest(wire), REQ);
});

test("messages - the message id is uid/generation, so a re-publish of a generation is a duplicate", () => {
  assert.equal(msgIdFor(REQ), "0b6e6f2c-1/3");
  assert.notEqual(msgIdFor(REQ), msgIdFor({ ...REQ, generation: 4 }));
});

test("messages - one subject per PatchJob; characters NATS gives meaning to are replaced", () => {
  assert.equal(subjectFor(REQ), `${SUBJECT_PREFIX}.team-a.bookworm`);
  assert.equal(subjectFor({ namespace: "ns", name: "a.b*c>d e" }), `${SUBJECT_PREFIX}.ns.a_b_c_d_e`);
});

test("messages - malformed requests are a BadMessageError that says what is wrong", () => {
  const cases: Array<[string, RegExp]> = [
    ["not json", /not JSON/],
    ["null", /needs namespace, name, uid and an integer generation/],
    ['{"namespace":"a","name":"b","uid":"c"}', /integer generation/],
    ['{"namespace":"a","name":"b","uid":"c","generation":1.5}', /integer generation/],
    ['{"namespace":1,"name":"b","uid":"c","generation":1}', /needs namespace/],
  ];
  for (const [wire, re] of cases)
    assert.throws(
      () => decodeRequest(wire),
      (err: unknown) => err instanceof BadMessageError && re.test(err.message),
      wire,
    );
});
