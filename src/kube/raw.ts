// A GET against the apiserver with an Accept header of our choosing, which the generated
// clients do not offer: a list as PartialObjectMetadataList (names, uids, resource
// versions, labels) is what a cheap relist reads. Authenticated as the KubeConfig is.
import { request, type RequestOptions } from "node:https";
import { request as httpRequest } from "node:http";
import type { KubeConfig } from "@kubernetes/client-node";
import { KubeApiError } from "./errors.ts";

/** Metadata only, for any resource a generic apiserver serves (sbomscanner's storage server too). */
export const PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

export interface RawResponse {
  status: number;
  body: string;
  bytes: number;
}

export async function rawGet(
  kc: KubeConfig,
  path: string,
  o: { accept?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RawResponse> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const url = new URL(path, cluster.server);
  const opts: RequestOptions = {
    method: "GET",
    hostname: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    headers: { accept: o.accept ?? "application/json" },
    timeout: o.timeoutMs ?? 60_000,
  };
  await kc.applyToHTTPSOptions(opts);
  const send = url.protocol === "http:" ? httpRequest : request;
  return new Promise((resolve, reject) => {
    const req = send({ ...opts, ...(o.signal ? { signal: o.signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, body: buf.toString("utf8"), bytes: buf.length });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url.pathname}: no answer in ${opts.timeout} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** The JSON of a successful GET; a failed one throws with the apiserver's code and message. */
export async function rawGetJSON<T>(
  kc: KubeConfig,
  path: string,
  o: Parameters<typeof rawGet>[2] = {},
): Promise<{ value: T; bytes: number }> {
  const r = await rawGet(kc, path, o);
  if (r.status < 200 || r.status >= 300) {
    let message = r.body.slice(0, 300);
    try {
      message = (JSON.parse(r.body) as { message?: string }).message ?? message;
    } catch {
      /* not JSON */
    }
    throw new KubeApiError(r.status, `GET ${path}: ${message}`);
  }
  return { value: JSON.parse(r.body) as T, bytes: r.bytes };
}
