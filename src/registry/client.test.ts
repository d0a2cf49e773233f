import { test } from "node:test";
import assert from "node:assert/strict";
import { PatchError } from "../api/index.ts";
import { RegistryClient } from "./client.ts";

async function failure(registry: string): Promise<PatchError> {
  const err = await new RegistryClient({ timeoutMs: 2000 })
    .resolve({ registry, repository: "nothing/here", tag: "never" })
    .then(
      () => assert.fail("resolved"),
      (e: unknown) => e,
    );
  assert.ok(err instanceof PatchError, String(err));
  return err;
}

test("registry client - an address no request can reach is permanent; a refused connection may pass", async () => {
  const badPort = await failure("127.0.0.1:1");
  assert.deepEqual([badPort.reason, badPort.transient], ["InvalidRegistryAddress", false]);
  assert.match(badPort.message, /registry 127\.0\.0\.1:1 cannot be reached at that address: bad port/);
  const badURL = await failure("127.0.0.1:99999");
  assert.deepEqual([badURL.reason, badURL.transient], ["InvalidRegistryAddress", false]);
  const refused = await failure("127.0.0.1:2");
  assert.deepEqual([refused.reason, refused.transient], ["RegistryUnreachable", true]);
  assert.match(refused.message, /ECONNREFUSED/);
});
