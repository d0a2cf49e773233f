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

export class EventHub {
  #subscribers = new Set<{ namespace: string; res: ServerResponse }>();
  #heartbeat: NodeJS.Timeout;
  #maxUnread: number;

  constructor(o: { heartbeatMs?: number; maxUnreadBytes?: number } = {}) {
    this.#maxUnread = o.maxUnreadBytes ?? DEFAULT_MAX_UNREAD_BYTES;
    this.#heartbeat = setInterval(() => {
      for (const s of this.#subscribers) s.res.write(": heartbeat\n\n");
    }, o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
  }

  subscribe(namespace: string, res: ServerResponse): void {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const sub = { namespace, res };
    this.#subscribers.add(sub);
    res.on("close", () => this.#subscribers.delete(sub));
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
    for (const s of this.#subscribers) s.res.end();
    this.#subscribers.clear();
  }
}
