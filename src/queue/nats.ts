// NATS connection and the JetStream stream, created idempotently by whoever starts
// first (controller or worker). Tested with nats-server 2.15.
import { connect, type NatsConnection, type ConnectionOptions } from "@nats-io/transport-node";
import {
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  DiscardPolicy,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { STREAM, SUBJECT_PREFIX } from "./messages.ts";

import type { Logger } from "../util/index.ts";

/**
 * The JetStream API error codes we act on (nats-server's errors.json): matched by code,
 * never by the message's text.
 */
export const JsCode = {
  ConsumerNameExists: 10013,
  ConsumerNotFound: 10014,
  NoMessageFound: 10037,
  StreamNameInUse: 10058,
  StreamNotFound: 10059,
  ConsumerAlreadyExists: 10105,
} as const;

export function isJsError(err: unknown, ...codes: number[]): boolean {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

export interface NatsOptions {
  /** nats://host:port[,nats://...] @default NATS_URL */
  url: string;
  name: string;
  /** A credentials file (NATS_CREDS), user/password or token, when the server needs one. */
  user?: string;
  pass?: string;
  token?: string;
  /** A CA file (PEM) to check the server's TLS certificate against (NATS_CA); a tls:// URL. */
  caFile?: string;
  log?: Logger;
}

export async function connectNats(o: NatsOptions): Promise<NatsConnection> {
  const opts: ConnectionOptions = {
    servers: o.url.split(","),
    name: o.name,
    // Keep trying forever: NATS going away must never stop a controller or a worker.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    waitOnFirstConnect: true,
    ...(o.user ? { user: o.user, pass: o.pass } : {}),
    ...(o.token ? { token: o.token } : {}),
    ...(o.caFile ? { tls: { caFile: o.caFile } } : {}),
  };
  const nc = await connect(opts);
  if (o.log) {
    const log = o.log;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error")
          log.info({ nats: s.type }, `NATS ${s.type}`);
      }
    })();
  }
  return nc;
}

export interface StreamOptions {
  /** How long JetStream remembers message ids to drop duplicates. @default 20 min */
  duplicateWindowMs?: number;
  /** Unprocessed requests are dropped after this long (the controller's sweep re-publishes). @default 7 days */
  maxAgeMs?: number;
  /**
   * Copies of the stream in a JetStream cluster (3 survives one node). Unset: 1 for a new
   * stream, and an existing stream keeps what it has, so that a process started without
   * the option never shrinks a replicated stream.
   */
  replicas?: number;
}

export function streamConfig(o: StreamOptions = {}): Partial<StreamConfig> & { name: string } {
  return {
    name: STREAM,
    subjects: [`${SUBJECT_PREFIX}.>`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(o.maxAgeMs ?? 7 * 24 * 3600_000),
    duplicate_window: nanos(o.duplicateWindowMs ?? 20 * 60_000),
    num_replicas: o.replicas ?? 1,
  };
}

/** Create the stream, or bring an existing one to this configuration. */
export async function ensureStream(jsm: JetStreamManager, o: StreamOptions = {}): Promise<void> {
  const cfg = streamConfig(o);
  try {
    const info = await jsm.streams.info(STREAM);
    if (o.replicas === undefined) cfg.num_replicas = info.config.num_replicas;
    await jsm.streams.update(STREAM, cfg);
  } catch (err) {
    if (!isJsError(err, JsCode.StreamNotFound)) throw err;
    try {
      await jsm.streams.add(cfg);
    } catch (e) {
      // Two processes racing: the other one created it.
      if (!isJsError(e, JsCode.StreamNameInUse)) throw e;
    }
  }
}

export async function manager(nc: NatsConnection, timeoutMs = 5000): Promise<JetStreamManager> {
  return jetstreamManager(nc, { timeout: timeoutMs });
}
