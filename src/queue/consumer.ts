// The workers' side of the stream: one durable pull consumer shared by every worker
// process (so work spreads across them), fetched one message per free slot (so no
// message waits in a local buffer while its ack timer runs), with the retry policy in
// one place: nak with a growing delay, and our own delivery limit, past which the
// handler's `exhausted` records the failure and the message is acked.
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
import { JsCode, ensureStream, isJsError, manager, type StreamOptions } from "./nats.ts";

import { errorMessage, type Logger, silentLogger } from "../util/index.ts";

/** @default 60_000 */
export const DEFAULT_ACK_WAIT_MS = 60_000;
/** @default 5 */
export const DEFAULT_MAX_DELIVER = 5;
/** @default 5_000 */
export const DEFAULT_BACKOFF_BASE_MS = 5_000;
/** @default 300_000 */
export const DEFAULT_BACKOFF_MAX_MS = 300_000;
/** @default 15_000 (the whole stop is bounded below Kubernetes' 30 s grace period) */
export const DEFAULT_SHUTDOWN_GRACE_MS = 15_000;

export interface ConsumerOptions {
  /** How long a delivery may go without an ack or a heartbeat before JetStream redelivers it. @default DEFAULT_ACK_WAIT_MS */
  ackWaitMs?: number;
  /** Deliveries after which the handler's `exhausted` runs (the server itself never gives up). @default DEFAULT_MAX_DELIVER */
  maxDeliver?: number;
  /** Parallel messages in this process. @default 1 */
  concurrency?: number;
  /** nak delay: base * 2^(delivery-1), capped. @default DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** On stop, in-flight handlers get this long before their signal aborts. @default DEFAULT_SHUTDOWN_GRACE_MS */
  shutdownGraceMs?: number;
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

export interface Handler {
  /** One delivery. `signal` aborts when the worker stops and the grace period is over. */
  handle(d: Delivery, signal: AbortSignal): Promise<HandlerResult>;
  /** A delivery past the limit: record the failure (the message is then acked). */
  exhausted?(d: Delivery): Promise<void>;
}

export function consumerConfig(o: ConsumerOptions = {}): Partial<ConsumerConfig> {
  return {
    durable_name: CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(o.ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
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
    if (!isJsError(err, JsCode.ConsumerNotFound)) throw err;
    try {
      await jsm.consumers.add(STREAM, cfg);
    } catch (e) {
      if (!isJsError(e, JsCode.ConsumerNameExists, JsCode.ConsumerAlreadyExists)) throw e;
    }
  }
}

export function retryDelay(deliveryCount: number, o: ConsumerOptions = {}): number {
  return Math.min(
    (o.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS) * 2 ** Math.max(0, deliveryCount - 1),
    o.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS,
  );
}

/**
 * Consume until `signal` aborts: `concurrency` slots, each fetching one message, running
 * the handler with a heartbeat, and acking or nak-ing with a delay. On abort, slots stop
 * fetching; in-flight handlers get `shutdownGraceMs`, then their signal aborts.
 */
export async function consume(
  nc: NatsConnection,
  handler: Handler,
  signal: AbortSignal,
  o: ConsumerOptions = {},
): Promise<void> {
  const log = o.log ?? silentLogger;
  const ackWait = o.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
  const maxDeliver = o.maxDeliver ?? DEFAULT_MAX_DELIVER;
  const js = jetstream(nc);
  // Aborted a grace period after `signal`: what in-flight handlers see.
  const inFlight = new AbortController();
  const onStop = () => {
    const t = setTimeout(
      () => inFlight.abort(new Error("worker stopping")),
      o.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS,
    );
    t.unref();
  };
  if (signal.aborted) onStop();
  else signal.addEventListener("abort", onStop, { once: true });
  const slot = async (n: number) => {
    let backoff = 1000;
    let consumer: Consumer | undefined;
    while (!signal.aborted) {
      let m: JsMsg | null;
      try {
        consumer ??= await js.consumers.get(STREAM, CONSUMER);
        m = await fetchOne(consumer, signal);
        if (signal.aborted) return;
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
      await handleOne(m, handler, { ackWait, maxDeliver, o, log, signal: inFlight.signal });
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 1 }, (_, i) => slot(i)));
}

/** `p`, or null as soon as `signal` aborts. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener("abort", onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener("abort", onAbort), reject(e)),
    );
  });
}

/**
 * One message, or null when the pull expires or `signal` aborts. Stopping cancels the
 * pull (its inbox is unsubscribed, so the server hands nothing more to it) instead of
 * leaving it open: a message handed to a stopped worker would wait out ack_wait and
 * count as a delivery nobody attempted. One that arrives in the race is given back at once.
 */
async function fetchOne(consumer: Consumer, signal: AbortSignal): Promise<JsMsg | null> {
  if (signal.aborted) return null;
  const pull = await consumer.fetch({ max_messages: 1, expires: 5_000 });
  const onAbort = () => pull.stop();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const m of pull) {
      if (!signal.aborted) return m;
      m.nak();
      return null;
    }
    return null;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

async function handleOne(
  m: JsMsg,
  handler: Handler,
  c: { ackWait: number; maxDeliver: number; o: ConsumerOptions; log: Logger; signal: AbortSignal },
): Promise<void> {
  const heartbeat = setInterval(() => m.working(), Math.max(1000, Math.floor(c.ackWait / 3)));
  const d: Delivery = {
    data: m.data,
    deliveryCount: m.info.deliveryCount,
    maxDeliver: c.maxDeliver,
    working: () => m.working(),
  };
  try {
    if (d.deliveryCount > c.maxDeliver && handler.exhausted) {
      await handler.exhausted(d);
      await m.ackAck().catch(() => m.ack());
      return;
    }
    const r = await handler.handle(d, c.signal);
    // Bounded: a server that is gone must not hold the ack (then it redelivers anyway).
    if (r.kind === "ack")
      await untilAborted(
        m.ackAck().catch(() => m.ack()),
        AbortSignal.timeout(5_000),
      );
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
