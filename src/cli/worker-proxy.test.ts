import { test } from "node:test";
import assert from "node:assert/strict";
import { copaProxyEnv } from "./worker.ts";
import { UsageError } from "../util/index.ts";

test("worker flags - --copa-https-proxy and --copa-no-proxy become copa's HTTPS_PROXY and NO_PROXY; bad values are usage errors", () => {
  assert.deepEqual(copaProxyEnv("http://10.244.0.1:80", ".svc,10.0.0.0/8"), {
    HTTPS_PROXY: "http://10.244.0.1:80",
    NO_PROXY: ".svc,10.0.0.0/8",
  });
  assert.equal(copaProxyEnv("", ""), undefined);
  assert.throws(() => copaProxyEnv("10.244.0.1:80", ""), UsageError);
  assert.throws(() => copaProxyEnv("ftp://p:21", ""), UsageError);
  assert.throws(() => copaProxyEnv("", ".svc"), /goes with --copa-https-proxy/);
  assert.throws(() => copaProxyEnv("http://p:80", "a b; rm"), /not a list of hosts/);
});
