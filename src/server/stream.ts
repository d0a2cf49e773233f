// The event stream (Server-Sent Events) of PatchJob changes, per namespace. A client
// that does not read has its stream ended rather than buffered without bound (the page
// reconnects and lists again).
import type { ServerResponse } from "node:http";
import type { PatchJob } from "../api/index.ts";
import { patchJobView } from "./views.ts";

/** @default 4 MiB */
export const DEFAULT_MAX_UNREAD_BYTES = 4 * 1024 * 1024;
/** @default 15_000 */
export const DEFAULT_HEARTBEAT_MS = 15_000;
/** A stream's caller is authorised again this often (token revoked, RBAC changed). @default 60_000 */
export const DEFAULT_RECHECK_MS = 60_000;

interface Subscriber {
  namespace: string;
  res: ServerResponse;
  /** Still allowed to watch? (TokenReview and SubjectAccessReview, through their cache.) */
  recheck?: () => Promise<boolean>;
  expiry?: NodeJS.Timeout;
}

/** Why a stream was ended by the server (the page then asks for a token again). */
export type EndReason = "Unauthorized" | "TokenExpired";

export class EventHub {
  #subscribers = new Set<Subscriber>();
  #heartbeat: NodeJS.Timeout;
  #recheck: NodeJS.Timeout;
  #maxUnread: number;

  constructor(o: { heartbeatMs?: number; maxUnreadBytes?: number; recheckMs?: number } = {}) {
    this.#maxUnread = o.maxUnreadBytes ?? DEFAULT_MAX_UNREAD_BYTES;
    this.#heartbeat = setInterval(() => {
      for (const s of this.#subscribers) s.res.write(": heartbeat\n\n");
    }, o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
    this.#recheck = setInterval(() => void this.recheckAll(), o.recheckMs ?? DEFAULT_RECHECK_MS);
    this.#heartbeat.unref();
    this.#recheck.unref();
  }

  /** Ask each stream's caller again; end the streams of those no longer allowed. */
  async recheckAll(): Promise<number> {
    let ended = 0;
    await Promise.all(
      [...this.#subscribers].map(async (s) => {
        if (!s.recheck) return;
        const ok = await s.recheck().catch(() => false);
        if (ok || !this.#subscribers.has(s)) return;
        this.#end(s, "Unauthorized");
        ended++;
      }),
    );
    return ended;
  }

  #end(s: Subscriber, reason: EndReason): void {
    this.#subscribers.delete(s);
    if (s.expiry) clearTimeout(s.expiry);
    s.res.write(`event: end\ndata: ${JSON.stringify({ reason })}\n\n`);
    s.res.end();
  }

  /**
   * A stream of the namespace's PatchJob changes. `recheck` is asked every recheck period;
   * at `expiresAt` (the token's end) the stream ends: a stream outlives neither the
   * caller's rights nor its token.
   */
  subscribe(
    namespace: string,
    res: ServerResponse,
    o: { recheck?: () => Promise<boolean>; expiresAt?: Date } = {},
  ): void {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const sub: Subscriber = { namespace, res, ...(o.recheck ? { recheck: o.recheck } : {}) };
    if (o.expiresAt) {
      sub.expiry = setTimeout(
        () => this.#end(sub, "TokenExpired"),
        Math.max(0, o.expiresAt.getTime() - Date.now()),
      );
      sub.expiry.unref();
    }
    this.#subscribers.add(sub);
    res.on("close", () => {
      this.#subscribers.delete(sub);
      if (sub.expiry) clearTimeout(sub.expiry);
    });
    res.write(`: subscribed to PatchJobs in ${namespace}\n\n`);
  }

  broadcast(type: "ADDED" | "MODIFIED" | "DELETED", pj: PatchJob): void {
    for (const s of this.#subscribers) {
      if (s.namespace !== pj.metadata.namespace) continue;
      if (s.res.writableLength > this.#maxUnread) {
        this.#subscribers.delete(s);
        s.res.end();
        continue;
      }
      s.res.write(`event: patchjob\ndata: ${JSON.stringify({ type, object: patchJobView(pj) })}\n\n`);
    }
  }

  close(): void {
    clearInterval(this.#heartbeat);
    clearInterval(this.#recheck);
    for (const s of this.#subscribers) {
      if (s.expiry) clearTimeout(s.expiry);
      s.res.end();
    }
    this.#subscribers.clear();
  }
}
