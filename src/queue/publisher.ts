// Publishing patch requests. The interface is tiny (sbomscanner's Publisher) so that
// the controller does not know NATS; the JetStream implementation makes sure the
// stream exists and reports whether JetStream saw the message as a duplicate.
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { decodeRequest, encodeRequest, msgIdFor, STREAM, subjectFor, type PatchRequest } from "./messages.ts";
import { JsCode, ensureStream, isJsError, manager, type StreamOptions } from "./nats.ts";

export interface PublishResult {
  seq: number;
  duplicate: boolean;
}

export interface Publisher {
  publish(req: PatchRequest): Promise<PublishResult>;
  /** Is a message for this generation (or a later one) still in the stream? */
  pending(req: PatchRequest): Promise<boolean>;
}

export class JetStreamPublisher implements Publisher {
  #nc: NatsConnection;
  #js: JetStreamClient;
  #streamReady = false;
  #stream: StreamOptions;
  #timeoutMs: number;

  constructor(nc: NatsConnection, opts: { stream?: StreamOptions; timeoutMs?: number } = {}) {
    this.#nc = nc;
    this.#js = jetstream(nc, { timeout: opts.timeoutMs ?? 5000 });
    this.#stream = opts.stream ?? {};
    this.#timeoutMs = opts.timeoutMs ?? 5000;
  }

  pending(req: PatchRequest): Promise<boolean> {
    return isPending(this.#nc, req);
  }

  async publish(req: PatchRequest): Promise<PublishResult> {
    if (this.#nc.isClosed()) throw new Error("NATS connection is closed");
    if (!this.#streamReady) {
      await ensureStream(await manager(this.#nc, this.#timeoutMs), this.#stream);
      this.#streamReady = true;
    }
    try {
      const ack = await this.#js.publish(subjectFor(req), encodeRequest(req), {
        msgID: msgIdFor(req),
        timeout: this.#timeoutMs,
      });
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      // The stream may have been deleted (or the server's store lost): check it next time.
      this.#streamReady = false;
      throw err;
    }
  }
}

/** Whether a request for this PatchJob generation is still waiting in the stream (not yet acked by a worker). */
export async function isPending(nc: NatsConnection, req: PatchRequest): Promise<boolean> {
  const jsm = await manager(nc);
  try {
    const m = await jsm.streams.getMessage(STREAM, { last_by_subj: subjectFor(req) });
    if (!m) return false;
    const r = decodeRequest(m.data);
    return r.uid === req.uid && r.generation >= req.generation;
  } catch (err) {
    if (isJsError(err, JsCode.NoMessageFound, JsCode.StreamNotFound)) return false;
    throw err;
  }
}
