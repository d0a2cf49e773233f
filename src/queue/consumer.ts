// The workers' side of the stream: one durable pull consumer shared by every worker
// process (so work spreads across them), fetched one message per free slot (so no
// message waits in a local buffer while its ack timer runs), with the retry policy in
// one place: nak with a growing delay, and our own delivery limit.
import type { NatsConnection } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  type Consumer,
  type ConsumerConfig,
  type JsMsg,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { setTimeout as sleep } from "node:timers/promises";
import { CONSUMER, STREAM, SUBJECT_PREFIX } from "./messages.ts";
import { ensureStream, manager, type StreamOptions } from "./nats.ts";
import { silentLogger, type Logger } from "../util/log.ts";
import { errorMessage } from "../util/errors.ts";

export interface ConsumerOptions {
  /** How long a delivery may go without an ack or a heartbeat before JetStream redelivers it. @default 60_000 */
  ackWaitMs?: number;
  /** Deliveries after which the handler's failure path runs (the server itself never gives up). @default 5 */
  maxDeliver?: number;
  /** Parallel messages in this process. @default 1 */
  concurrency?: number;
  /** nak delay: base * 2^(delivery-1), capped. @default 5_000, 300_000 */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  stream?: StreamOptions;
  log?: Logger;
}

/** What a handler sees of a message. */
export interface Delivery {
  data: Uint8Array;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** The configured limit, for the handler's last-attempt decisions. */
  maxDeliver: number;
  /** Reset the ack timer (call during long work). */
  working(): void;
}

export type HandlerResult =
  /** Done: remove the message. */
  | { kind: "ack" }
  /** Try again later (after the growing delay, or `delayMs`). */
  | { kind: "retry"; delayMs?: number };

export type Handler = (d: Delivery, signal: AbortSignal) => Promise<HandlerResult>;

export function consumerConfig(o: ConsumerOptions = {}): Partial<ConsumerConfig> {
  return {
    durable_name: CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(o.ackWaitMs ?? 60_000),
    // Unlimited on the server: a worker that dies during the "last" attempt must still
    // have its message redelivered, so that someone records the failure.
    max_deliver: -1,
    max_ack_pending: 1000,
    filter_subject: `${SUBJECT_PREFIX}.>`,
  };
}

/** Create the stream and the durable consumer, or bring them to this configuration. */
export async function ensureConsumer(nc: NatsConnection, o: ConsumerOptions = {}): Promise<void> {
  const jsm = await manager(nc);
  await ensureStream(jsm, o.stream);
  const cfg = consumerConfig(o);
  try {
    await jsm.consumers.info(STREAM, CONSUMER);
    await jsm.consumers.update(STREAM, CONSUMER, {
      ack_wait: cfg.ack_wait,
      max_deliver: cfg.max_deliver,
      max_ack_pending: cfg.max_ack_pending,
    });
  } catch (err) {
    if (!/consumer not found/i.test(errorMessage(err))) throw err;
    try {
      await jsm.consumers.add(STREAM, cfg);
    } catch (e) {
      if (!/already (exists|in use)/i.test(errorMessage(e))) throw e;
    }
  }
}

export function retryDelay(deliveryCount: number, o: ConsumerOptions = {}): number {
  return Math.min(
    (o.backoffBaseMs ?? 5_000) * 2 ** Math.max(0, deliveryCount - 1),
    o.backoffMaxMs ?? 300_000,
  );
}

/**
 * Consume until `signal` aborts: `concurrency` slots, each fetching one message, running
 * the handler with a heartbeat, and acking or nak-ing with a delay. On abort, slots stop
 * fetching and in-flight handlers finish (their signal aborts only if they overrun).
 */
export async function consume(
  nc: NatsConnection,
  handler: Handler,
  signal: AbortSignal,
  o: ConsumerOptions = {},
): Promise<void> {
  const log = o.log ?? silentLogger;
  const ackWait = o.ackWaitMs ?? 60_000;
  const maxDeliver = o.maxDeliver ?? 5;
  const js = jetstream(nc);
  const slot = async (n: number) => {
    let backoff = 1000;
    let consumer: Consumer | undefined;
    while (!signal.aborted) {
      let m: JsMsg | null;
      try {
        consumer ??= await js.consumers.get(STREAM, CONSUMER);
        m = await consumer.next({ expires: 5_000 });
        backoff = 1000;
      } catch (err) {
        consumer = undefined;
        if (signal.aborted) return;
        log.warn({ slot: n, err: errorMessage(err) }, "cannot fetch from the patch stream; retrying");
        await sleep(backoff, undefined, { signal }).catch(() => {});
        backoff = Math.min(backoff * 2, 30_000);
        continue;
      }
      if (!m) continue;
      await handleOne(m, handler, { ackWait, maxDeliver, o, log });
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 1 }, (_, i) => slot(i)));
}

async function handleOne(
  m: JsMsg,
  handler: Handler,
  c: { ackWait: number; maxDeliver: number; o: ConsumerOptions; log: Logger },
): Promise<void> {
  const heartbeat = setInterval(() => m.working(), Math.max(1000, Math.floor(c.ackWait / 3)));
  const ac = new AbortController();
  try {
    const r = await handler(
      {
        data: m.data,
        deliveryCount: m.info.deliveryCount,
        maxDeliver: c.maxDeliver,
        working: () => m.working(),
      },
      ac.signal,
    );
    if (r.kind === "ack") await m.ackAck().catch(() => m.ack());
    else m.nak(r.delayMs ?? retryDelay(m.info.deliveryCount, c.o));
  } catch (err) {
    // A handler that throws has a bug or lost its dependencies: try again later.
    c.log.error(
      { err: errorMessage(err), delivery: m.info.deliveryCount },
      "patch handler failed unexpectedly; will retry",
    );
    m.nak(retryDelay(m.info.deliveryCount, c.o));
  } finally {
    clearInterval(heartbeat);
  }
}
