// A validating admission webhook that admits a Pod only when each of its images that
// matches a pattern (our `-patched` tags, say) is signed with the workers' key: the
// verify step of a cluster that runs only what vuln-patcher signed. For clusters
// without Kyverno or the sigstore policy-controller (docs/signing.md shows both).
// cosign does the checking; a verdict is cached per image reference for a short while.
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { RE2JS } from "re2js";
import { errorMessage, type Logger, silentLogger } from "../util/index.ts";
import { verifyImage } from "../patch/index.ts";

/** @default 60_000 */
export const DEFAULT_VERDICT_TTL_MS = 60_000;
/** Admission requests larger than this are refused unread. */
const MAX_BODY = 4 * 1024 * 1024;

export interface AdmissionOptions {
  /** The public key (file or KMS URI) images must be signed with. */
  key: string;
  /** RE2 patterns: an image matching any must be signed. */
  images: string[];
  insecureHosts?: string[];
  /** Stand-in for cosign in unit tests. @default verifyImage (cosign verify) */
  verify?: (ref: string) => Promise<void>;
  ttlMs?: number;
  log?: Logger;
}

interface PodSpecLike {
  containers?: Array<{ image?: string }>;
  initContainers?: Array<{ image?: string }>;
  ephemeralContainers?: Array<{ image?: string }>;
}

interface AdmissionReview {
  apiVersion?: string;
  kind?: string;
  request?: { uid: string; kind?: { kind?: string }; object?: { spec?: PodSpecLike } };
}

/** The images of a Pod that must be signed. */
export function imagesToVerify(spec: PodSpecLike | undefined, patterns: RE2JS[]): string[] {
  const all = [
    ...(spec?.containers ?? []),
    ...(spec?.initContainers ?? []),
    ...(spec?.ephemeralContainers ?? []),
  ]
    .map((c) => c.image ?? "")
    .filter(Boolean);
  return [...new Set(all.filter((i) => patterns.some((p) => p.matches(i))))];
}

export function admissionHandler(o: AdmissionOptions) {
  const patterns = o.images.map((p) => RE2JS.compile(p));
  const log = o.log ?? silentLogger;
  const verify =
    o.verify ??
    (async (ref: string) => {
      await verifyImage(ref, { key: o.key, types: [], insecureHosts: o.insecureHosts ?? [] });
    });
  const verdicts = new Map<string, { at: number; error?: string }>();
  const check = async (ref: string): Promise<string | undefined> => {
    const hit = verdicts.get(ref);
    if (hit && Date.now() - hit.at < (o.ttlMs ?? DEFAULT_VERDICT_TTL_MS)) return hit.error;
    const error = await verify(ref).then(
      () => undefined,
      (e: unknown) => errorMessage(e),
    );
    verdicts.set(ref, { at: Date.now(), ...(error ? { error } : {}) });
    return error;
  };
  return async (review: AdmissionReview) => {
    const req = review.request;
    if (!req) throw new Error("not an AdmissionReview request");
    const images = req.kind?.kind === "Pod" ? imagesToVerify(req.object?.spec, patterns) : [];
    const refused: string[] = [];
    for (const image of images) {
      const error = await check(image);
      if (error) refused.push(`${image}: ${error}`);
    }
    log.info({ uid: req.uid, images, refused: refused.length }, refused.length ? "refused" : "admitted");
    return {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: {
        uid: req.uid,
        allowed: refused.length === 0,
        ...(refused.length
          ? { status: { code: 403, message: `not signed by vuln-patcher's key: ${refused.join("; ")}` } }
          : {}),
      },
    };
  };
}

/** The webhook over HTTPS (the apiserver calls webhooks over TLS only), at POST /validate. */
export async function startAdmissionServer(
  o: AdmissionOptions & { cert: string; tlsKey: string; host: string; port: number },
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const handle = admissionHandler(o);
  const server = createServer({ cert: o.cert, key: o.tlsKey }, (req, res) => {
    void serve(req, res, handle);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address();
  return {
    server,
    port: typeof addr === "object" && addr ? addr.port : o.port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  handle: ReturnType<typeof admissionHandler>,
): Promise<void> {
  const reply = (code: number, body: unknown) => {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const url = new URL(req.url ?? "/", "https://localhost");
  if (req.method === "GET" && url.pathname === "/healthz") return reply(200, { ok: true });
  if (req.method !== "POST" || url.pathname !== "/validate") return reply(404, { error: "not found" });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) return reply(413, { error: "request too large" });
    chunks.push(c);
  }
  try {
    reply(200, await handle(JSON.parse(Buffer.concat(chunks).toString("utf8")) as AdmissionReview));
  } catch (err) {
    reply(400, { error: errorMessage(err) });
  }
}
