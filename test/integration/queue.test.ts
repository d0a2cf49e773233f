// The patch queue on a real nats-server with JetStream: what a stopping consumer leaves
// behind. Workers share one durable consumer; one that stops must not leave a pull
// request open that swallows the next message (it would wait out ack_wait and count as
// a delivery nobody attempted).
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Env } from "../../src/devenv/index.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import {
  connectNats,
  consume,
  CONSUMER,
  type Delivery,
  ensureConsumer,
  JetStreamPublisher,
  manager,
  STREAM,
} from "../../src/queue/index.ts";
import { testEnv } from "../support/shared.ts";

let env: Env;
let nc: NatsConnection;

before(async () => {
  env = await testEnv();
  nc = await connectNats({ url: env.natsURL, name: "queue-test" });
});

after(async () => {
  await nc?.close();
  await env?.stop();
});

test("queue - a consumer stopped while its pull waits leaves nothing behind: the next message goes to the next consumer, first delivery", async () => {
  const ackWaitMs = 60_000;
  await ensureConsumer(nc, { ackWaitMs });
  const jsm = await manager(nc);
  const waiting = async () => (await jsm.consumers.info(STREAM, CONSUMER)).num_waiting;
  const base = await waiting();
  // The first consumer's pull is open on the server ...
  const firstSeen: Delivery[] = [];
  const stopFirst = new AbortController();
  const first = consume(nc, { handle: async (d) => (firstSeen.push(d), { kind: "ack" }) }, stopFirst.signal, {
    ackWaitMs,
  });
  await waitFor(
    "the first consumer's pull on the server",
    async () => ((await waiting()) > base ? true : undefined),
    10_000,
    50,
  );
  // ... and it stops (the shared connection stays open, as when a worker restarts its consumer).
  stopFirst.abort();
  await first;
  // No waiting for the pull to expire (5 s): the message comes at once.
  // A message now, and another consumer.
  const req = { namespace: "q", name: "after-stop", uid: "u-1", generation: 1 };
  await new JetStreamPublisher(nc).publish(req);
  const secondSeen: Delivery[] = [];
  const stopSecond = new AbortController();
  const second = consume(
    nc,
    { handle: async (d) => (secondSeen.push(d), { kind: "ack" }) },
    stopSecond.signal,
    {
      ackWaitMs,
    },
  );
  try {
    // Well inside ack_wait: only a message nobody swallowed can arrive this soon.
    await waitFor(
      "the message at the second consumer",
      async () => (secondSeen.length ? true : undefined),
      ackWaitMs / 2,
      50,
    );
  } finally {
    stopSecond.abort();
    await second;
  }
  assert.equal(firstSeen.length, 0, "the stopped consumer handled nothing");
  assert.equal(
    secondSeen[0]!.deliveryCount,
    1,
    "its first delivery: no delivery was lost to the stopped pull",
  );
});
