import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { EventHub } from "./stream.ts";
import { tokenExpiry } from "./auth.ts";

/** A real HTTP server whose one route subscribes the response with `o`; the body as read by a client. */
async function stream(
  hub: EventHub,
  o: Parameters<EventHub["subscribe"]>[2],
): Promise<{ body: Promise<string>; close(): void }> {
  const server = createServer((_req, res: ServerResponse) => hub.subscribe("ns", res, o));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const res = await fetch(`http://127.0.0.1:${port}/`);
  return { body: res.text(), close: () => server.close() };
}

test("stream - ends at the token's expiry, saying so", async () => {
  const hub = new EventHub({ heartbeatMs: 60_000, recheckMs: 60_000 });
  const s = await stream(hub, { expiresAt: new Date(Date.now() + 100) });
  const body = await s.body; // resolves only when the server ends the stream
  assert.match(body, /event: end\ndata: \{"reason":"TokenExpired"\}/);
  hub.close();
  s.close();
});

test("stream - a caller no longer allowed is cut at the next check; one still allowed stays", async () => {
  const hub = new EventHub({ heartbeatMs: 60_000, recheckMs: 60_000 });
  let allowed = true;
  const s = await stream(hub, { recheck: async () => allowed });
  assert.equal(await hub.recheckAll(), 0, "still allowed: nothing ended");
  allowed = false;
  assert.equal(await hub.recheckAll(), 1);
  assert.match(await s.body, /event: end\ndata: \{"reason":"Unauthorized"\}/);
  hub.close();
  s.close();
});

test("stream - a JWT's exp is read for scheduling; other tokens have none", () => {
  const jwt = (payload: unknown) =>
    ["e30", Buffer.from(JSON.stringify(payload)).toString("base64url"), "sig"].join(".");
  assert.equal(tokenExpiry(jwt({ exp: 1_800_000_000 }))?.toISOString(), "2027-01-15T08:00:00.000Z");
  assert.equal(tokenExpiry(jwt({ sub: "x" })), undefined);
  assert.equal(tokenExpiry("not-a-jwt"), undefined);
  assert.equal(tokenExpiry("a.%%%.c"), undefined);
});
