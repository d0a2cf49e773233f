// Small HTTP helpers for the API: JSON answers, bounded JSON bodies, and an error that
// carries its status code.
import type { IncomingMessage, ServerResponse } from "node:http";

import { errorMessage } from "../util/index.ts";

/** Request bodies over this are refused (413). @default 64 KiB */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

export class HttpError extends Error {
  override name = "HttpError";
  readonly status: number;
  /** A machine-readable reason, the same a PatchJob's status would carry (e.g. TargetNotAllowed). */
  readonly reason?: string;
  constructor(status: number, message: string, reason?: string) {
    super(message);
    this.status = status;
    if (reason) this.reason = reason;
  }
  get code(): string {
    return `HTTP_${this.status}`;
  }
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body) + "\n");
}

export async function readJSON(
  req: IncomingMessage,
  maxBytes = DEFAULT_MAX_BODY_BYTES,
): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > maxBytes) throw new HttpError(413, `request body over ${maxBytes} bytes`);
    chunks.push(c as Buffer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch (err) {
    throw new HttpError(400, `the body must be a JSON object: ${errorMessage(err)}`);
  }
}
