// The HTTP API (and the web UI's backend): PatchJobs and reports per namespace, ad-hoc
// patches, cancelling a queued patch, and a Server-Sent Events stream of PatchJob
// changes. Every /api request needs the caller's Kubernetes bearer token and is allowed
// only if a SubjectAccessReview says the caller may do the same thing with kubectl.
// Reads come from informer caches (no apiserver round trip per page view); writes go to
// the apiserver with the server's own identity after the check.
import type { KubeConfig } from "@kubernetes/client-node";
import {
  grantInformer,
  namespaceInformer,
  patchJobInformer,
  ReportImages,
  reportInformer,
  Tenancy,
} from "../controller/index.ts";
import { patchJobClient } from "../kube/index.ts";

import { type Logger, type Route, silentLogger } from "../util/index.ts";

import type { Authenticator } from "./auth.ts";
import { openAPIDocument } from "./openapi.ts";
import { json } from "./respond.ts";
import { dispatch, type RouteContext } from "./routes.ts";
import { EventHub } from "./stream.ts";
import { UI_HTML, UI_JS } from "./ui.ts";

export interface ApiOptions {
  kc: KubeConfig;
  auth: Authenticator;
  log?: Logger;
  /** SSE heartbeat. @default DEFAULT_HEARTBEAT_MS */
  heartbeatMs?: number;
  /** How often an event stream's caller is authorised again. @default DEFAULT_RECHECK_MS */
  recheckMs?: number;
}

export interface RunningApi {
  routes: Route[];
  /** Resolves when the caches have listed once. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The page, its script and the OpenAPI document. */
const staticRoute: Route = (req, res, url) => {
  if (req.method !== "GET") return false;
  if (url.pathname === "/openapi.json") return (json(res, 200, openAPIDocument()), true);
  if (url.pathname === "/" || url.pathname === "/ui") {
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy": PAGE_CSP,
      "x-content-type-options": "nosniff",
    });
    res.end(UI_HTML);
    return true;
  }
  if (url.pathname === "/ui.js") {
    res.writeHead(200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    });
    res.end(UI_JS);
    return true;
  }
  return false;
};

export async function startApi(o: ApiOptions): Promise<RunningApi> {
  const log = o.log ?? silentLogger;
  const stop = new AbortController();
  const patchJobs = patchJobInformer({ kc: o.kc, log, prefix: "api/" });
  const reports = reportInformer({ kc: o.kc, log, prefix: "api/" });
  const grants = grantInformer({ kc: o.kc, log, prefix: "api/" });
  const namespaces = namespaceInformer({ kc: o.kc, log, prefix: "api/" });
  const images = new ReportImages();
  images.follow((h) => reports.on(h));
  const tenancy = new Tenancy({ grants, namespaces, images });
  grants.on({
    add: () => tenancy.invalidate(),
    update: () => tenancy.invalidate(),
    delete: () => tenancy.invalidate(),
  });
  const informers = [patchJobs, reports, grants, namespaces];
  const running = informers.map((i) => i.run(stop.signal));
  const synced = Promise.all(informers.map((i) => i.waitForSync(stop.signal))).then(
    () => {},
    () => {},
  );
  const hub = new EventHub({
    ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}),
    ...(o.recheckMs ? { recheckMs: o.recheckMs } : {}),
  });
  patchJobs.on({
    add: (_k, pj) => hub.broadcast("ADDED", pj),
    update: (_k, pj) => hub.broadcast("MODIFIED", pj),
    delete: (_k, pj) => hub.broadcast("DELETED", pj),
  });
  const ctx: RouteContext = {
    auth: o.auth,
    client: patchJobClient(o.kc),
    patchJobs,
    reports,
    tenancy,
    hub,
    log,
  };
  const apiRoute: Route = async (req, res, url) => {
    if (staticRoute(req, res, url)) return true;
    if (!url.pathname.startsWith("/api/")) return false;
    await dispatch(ctx, req, res, url.pathname);
    return true;
  };
  return {
    routes: [apiRoute],
    synced,
    async stop() {
      hub.close();
      stop.abort();
      await Promise.all(running);
    },
  };
}
