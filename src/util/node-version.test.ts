import { test } from "node:test";
import assert from "node:assert/strict";
import { nodeTooOld } from "./node-version.ts";

test("node version - older than the minimum is refused with one line that says what to run; equal or newer passes", () => {
  assert.match(
    nodeTooOld("20.20.2", "22.19.0")!,
    /^Node\.js 20\.20\.2 is too old: vuln-patcher needs 22\.19\.0 or newer; run it through npm/,
  );
  assert.ok(nodeTooOld("22.18.9", "22.19.0"));
  assert.equal(nodeTooOld("22.19.0", "22.19.0"), undefined);
  assert.equal(nodeTooOld("24.11.1", "22.19.0"), undefined);
  assert.equal(nodeTooOld("v23.0.0", "22.19.0"), undefined);
  assert.equal(nodeTooOld(process.versions.node), undefined, "the Node the tests run on");
});
