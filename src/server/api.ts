// The HTTP API (and the web UI's backend): PatchJobs and reports per namespace, ad-hoc
// patches, cancelling a queued patch, and a Server-Sent Events stream of PatchJob
// changes. Every /api request needs the caller's Kubernetes bearer token and is allowed
// only if a SubjectAccessReview says the caller may do the same thing with kubectl.
// Reads come from informer caches (no apiserver round trip per page view); writes go to
// the apiserver with the server's own identity after the check.
import type { IncomingMessage, ServerResponse } from "node:http";
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  GROUP,
  PLURAL,
  Phase,
  REPORT_GROUP,
  REPORT_PLURAL,
  REPORT_VERSION,
  Reason,
  Source,
  VERSION,
  markFailed,
  parseImageRef,
  patchJobNameForIndex,
  patchJobNameForImage,
  specFromReport,
  type PatchJob,
  type PatchJobSpec,
} from "../api/index.ts";
import { Informer, type ListPage, type RawObject } from "../kube/informer.ts";
import { patchJobClient } from "../kube/patchjobs.ts";
import { isConflict, apiMessage } from "../kube/errors.ts";
import { summarizeReport, type ReportSummary } from "../controller/summary.ts";
import { slimPatchJob } from "../controller/manager.ts";
import type { Route } from "./http.ts";
import { bearerToken, type Access, type Authenticator, type Caller } from "./auth.ts";
import { openAPIDocument } from "./openapi.ts";
import { UI_HTML, UI_JS } from "./ui.ts";
import { silentLogger, type Logger } from "../util/log.ts";
import { errorMessage } from "../util/errors.ts";

export interface ApiOptions {
  kc: KubeConfig;
  auth: Authenticator;
  log?: Logger;
  /** SSE heartbeat. @default 15_000 */
  heartbeatMs?: number;
}

export interface RunningApi {
  routes: Route[];
  /** Resolves when the caches have listed once. */
  synced: Promise<void>;
  stop(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const NS_RE = "([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)";
const NAME_RE = "([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)";
const MAX_BODY = 64 * 1024;

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body) + "\n");
}

async function readJSON(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
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

/** A report as the API shows it: identity, image, counts; never the ~150 KB body. */
export function reportView(key: string, s: ReportSummary, pj: PatchJob | undefined) {
  const [namespace, name] = key.split("/") as [string, string];
  const f = s.facts;
  return {
    namespace,
    name,
    ...(f
      ? {
          image: {
            registry: f.imageMetadata.registryURI,
            repository: f.imageMetadata.repository,
            tag: f.imageMetadata.tag,
            digest: f.imageMetadata.digest,
            platform: f.imageMetadata.platform,
            ...(f.imageMetadata.indexDigest ? { indexDigest: f.imageMetadata.indexDigest } : {}),
          },
          vulnerabilities: {
            total: f.conversion.ok ? f.conversion.value.counts.total : f.conversion.counts.total,
            fixable: f.conversion.ok ? f.conversion.value.counts.fixable : f.conversion.counts.fixable,
            bySeverity: f.bySeverity,
          },
          patchable: f.conversion.ok && f.conversion.value.updates.length > 0,
          ...(f.conversion.ok ? {} : { problem: f.conversion.message }),
        }
      : { problem: s.invalid?.message ?? "unreadable report" }),
    ...(pj ? { patchJob: { name: pj.metadata.name, phase: pj.status?.phase ?? "Pending" } } : {}),
  };
}

/** A PatchJob as the API shows it: what a person needs, not managedFields. */
export function patchJobView(pj: PatchJob) {
  return {
    namespace: pj.metadata.namespace,
    name: pj.metadata.name,
    generation: pj.metadata.generation,
    createdAt: pj.metadata.creationTimestamp,
    spec: pj.spec,
    status: pj.status ?? {},
  };
}

export async function startApi(o: ApiOptions): Promise<RunningApi> {
  const log = o.log ?? silentLogger;
  const api = o.kc.makeApiClient(CustomObjectsApi);
  const client = patchJobClient(o.kc);
  const stop = new AbortController();
  const listOf =
    (group: string, version: string, plural: string) =>
    async (p: { limit: number; continueToken?: string }): Promise<ListPage> =>
      (await api.listClusterCustomObject({
        group,
        version,
        plural,
        limit: p.limit,
        _continue: p.continueToken,
      })) as ListPage;
  const patchJobs = new Informer<PatchJob>({
    name: "api/patchjobs",
    kc: o.kc,
    list: listOf(GROUP, VERSION, PLURAL),
    watchPath: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
    transform: slimPatchJob,
    resourceVersion: (p) => p.metadata.resourceVersion,
    log,
  });
  const reports = new Informer<ReportSummary>({
    name: "api/reports",
    kc: o.kc,
    list: listOf(REPORT_GROUP, REPORT_VERSION, REPORT_PLURAL),
    watchPath: `/apis/${REPORT_GROUP}/${REPORT_VERSION}/${REPORT_PLURAL}`,
    transform: (raw: RawObject) => summarizeReport(raw),
    resourceVersion: (s) => s.resourceVersion,
    pageSize: 50,
    log,
  });
  const running = [patchJobs.run(stop.signal), reports.run(stop.signal)];
  const synced = Promise.all([patchJobs.waitForSync(stop.signal), reports.waitForSync(stop.signal)]).then(
    () => {},
    () => {},
  );

  // SSE subscribers, by namespace.
  const subscribers = new Set<{ namespace: string; res: ServerResponse }>();
  const broadcast = (type: "ADDED" | "MODIFIED" | "DELETED", pj: PatchJob) => {
    for (const s of subscribers) {
      if (s.namespace !== pj.metadata.namespace) continue;
      // A client that does not read: end its stream rather than buffer without bound (the
      // page reconnects and lists again).
      if (s.res.writableLength > 4 * 1024 * 1024) {
        subscribers.delete(s);
        s.res.end();
        continue;
      }
      s.res.write(`event: patchjob\ndata: ${JSON.stringify({ type, object: patchJobView(pj) })}\n\n`);
    }
  };
  patchJobs.on({
    add: (_k, pj) => broadcast("ADDED", pj),
    update: (_k, pj) => broadcast("MODIFIED", pj),
    delete: (_k, pj) => broadcast("DELETED", pj),
  });
  const heartbeat = setInterval(() => {
    for (const s of subscribers) s.res.write(": heartbeat\n\n");
  }, o.heartbeatMs ?? 15_000);

  async function caller(req: IncomingMessage): Promise<Caller> {
    const token = bearerToken(req.headers.authorization);
    if (!token)
      throw new HttpError(401, "a Kubernetes bearer token is required (Authorization: Bearer <token>)");
    const c = await o.auth.authenticate(token);
    if (!c) throw new HttpError(401, "the token was not accepted by the Kubernetes API server");
    return c;
  }

  async function authorize(c: Caller, a: Access): Promise<void> {
    if (await o.auth.allowed(c, a)) return;
    const what = `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ""}${a.name ? ` ${a.name}` : ""}`;
    throw new HttpError(403, `${c.username} may not ${what} in namespace ${a.namespace}`);
  }

  const pjAccess = (
    verb: Access["verb"],
    namespace: string,
    name?: string,
    subresource?: string,
  ): Access => ({
    verb,
    group: GROUP,
    resource: PLURAL,
    namespace,
    ...(name ? { name } : {}),
    ...(subresource ? { subresource } : {}),
  });

  type Handler = (req: IncomingMessage, res: ServerResponse, m: RegExpExecArray, url: URL) => Promise<void>;
  const table: Array<{ method: string; re: RegExp; handler: Handler }> = [
    {
      method: "GET",
      re: new RegExp(`^/api/v1/namespaces/${NS_RE}/reports$`),
      handler: async (req, res, m) => {
        const ns = m[1]!;
        const c = await caller(req);
        await authorize(c, { verb: "list", group: REPORT_GROUP, resource: REPORT_PLURAL, namespace: ns });
        const items = [];
        for (const [key, s] of reportsIn(ns)) items.push(reportView(key, s, patchJobs.get(key)));
        items.sort((a, b) => a.name.localeCompare(b.name));
        json(res, 200, { items });
      },
    },
    {
      method: "GET",
      re: new RegExp(`^/api/v1/namespaces/${NS_RE}/patchjobs$`),
      handler: async (req, res, m) => {
        const ns = m[1]!;
        await authorize(await caller(req), pjAccess("list", ns));
        const items = [...patchJobs.values()]
          .filter((p) => p.metadata.namespace === ns)
          .map(patchJobView)
          .sort((a, b) => a.name.localeCompare(b.name));
        json(res, 200, { items });
      },
    },
    {
      method: "GET",
      re: new RegExp(`^/api/v1/namespaces/${NS_RE}/patchjobs/${NAME_RE}$`),
      handler: async (req, res, m) => {
        const [ns, name] = [m[1]!, m[3]!];
        await authorize(await caller(req), pjAccess("get", ns, name));
        const pj = patchJobs.get(`${ns}/${name}`) ?? (await client.get(ns, name));
        if (!pj) throw new HttpError(404, `PatchJob ${ns}/${name} not found`);
        json(res, 200, patchJobView(pj));
      },
    },
    {
      method: "POST",
      re: new RegExp(`^/api/v1/namespaces/${NS_RE}/patchjobs$`),
      handler: async (req, res, m) => {
        const ns = m[1]!;
        const c = await caller(req);
        await authorize(c, pjAccess("create", ns));
        const body = await readJSON(req);
        const spec = await specFor(c, ns, body);
        const name = patchJobNameForImage("manual", spec.image!) + "-" + Date.now().toString(36);
        try {
          const pj = await client.create({
            metadata: {
              name: name.slice(0, 253),
              namespace: ns,
              labels: { "app.kubernetes.io/managed-by": "vuln-patcher", "vulnpatcher.io/source": "manual" },
              annotations: { "vulnpatcher.io/requested-by": c.username },
            },
            spec,
          });
          log.info(
            { patchjob: `${ns}/${pj.metadata.name}`, user: c.username, dryRun: !!spec.dryRun },
            "ad-hoc patch requested",
          );
          json(res, 201, patchJobView(pj));
        } catch (err) {
          throw new HttpError(
            isConflict(err) ? 409 : 422,
            `the PatchJob was not created: ${apiMessage(err)}`,
          );
        }
      },
    },
    {
      method: "POST",
      re: new RegExp(`^/api/v1/namespaces/${NS_RE}/patchjobs/${NAME_RE}/cancel$`),
      handler: async (req, res, m) => {
        const [ns, name] = [m[1]!, m[3]!];
        const c = await caller(req);
        await authorize(c, pjAccess("update", ns, name, "status"));
        const pj = await client.get(ns, name);
        if (!pj) throw new HttpError(404, `PatchJob ${ns}/${name} not found`);
        const phase = pj.status?.phase ?? Phase.Pending;
        if (pj.status?.reason === Reason.Grouped)
          throw new HttpError(
            409,
            `PatchJob ${ns}/${name} is one platform of index PatchJob ${pj.status.group}: cancel that one (it patches every platform together)`,
          );
        if (phase !== Phase.Pending && phase !== Phase.Queued)
          throw new HttpError(
            409,
            `PatchJob ${ns}/${name} is ${phase}: only a Pending or Queued patch can be cancelled`,
          );
        try {
          const done = await client.updateStatus(
            pj,
            markFailed(pj, Reason.Cancelled, `cancelled by ${c.username}`),
          );
          // An index PatchJob: its platforms' PatchJobs end with it.
          for (const p of pj.spec.platforms ?? []) {
            const member = p.patchJob ? await client.get(ns, p.patchJob) : undefined;
            if (member?.status?.reason !== Reason.Grouped) continue;
            await client
              .updateStatus(
                member,
                markFailed(
                  member,
                  Reason.Cancelled,
                  `its index PatchJob ${name} was cancelled by ${c.username}`,
                ),
              )
              .catch((err: unknown) => {
                if (!isConflict(err)) throw err;
              });
          }
          json(res, 200, patchJobView(done));
        } catch (err) {
          if (isConflict(err))
            throw new HttpError(
              409,
              `PatchJob ${ns}/${name} changed meanwhile (a worker may have started it); look again`,
            );
          throw err;
        }
      },
    },
    {
      method: "GET",
      re: new RegExp(`^/api/v1/namespaces/${NS_RE}/events$`),
      handler: async (req, res, m) => {
        const ns = m[1]!;
        let gone = false;
        res.on("close", () => (gone = true));
        await authorize(await caller(req), pjAccess("watch", ns));
        if (gone) return;
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-store",
          connection: "keep-alive",
          "x-accel-buffering": "no",
        });
        const sub = { namespace: ns, res };
        subscribers.add(sub);
        res.on("close", () => subscribers.delete(sub));
        res.write(`: subscribed to PatchJobs in ${ns}\n\n`);
      },
    },
  ];

  function* reportsIn(ns: string): Iterable<[string, ReportSummary]> {
    for (const key of reports.keys()) {
      const s = reports.get(key);
      if (s && key.startsWith(`${ns}/`)) yield [key, s];
    }
  }

  /** The spec of an ad-hoc patch: of an image reference, or of a report in the namespace. */
  async function specFor(c: Caller, ns: string, b: Record<string, unknown>): Promise<PatchJobSpec> {
    const dryRun = b.dryRun === true;
    if (typeof b.report === "string") {
      // The report is read with the server's rights: the caller must be allowed to read it too.
      await authorize(c, {
        verb: "get",
        group: REPORT_GROUP,
        resource: REPORT_PLURAL,
        namespace: ns,
        name: b.report,
      });
      const s = reports.get(`${ns}/${b.report}`);
      if (!s) throw new HttpError(404, `VulnerabilityReport ${ns}/${b.report} not found`);
      const im = s.facts?.imageMetadata;
      if (im?.indexDigest && !dryRun)
        throw new HttpError(
          422,
          `report ${b.report} is one platform (${im.platform}) of a multi-arch index: patching it alone would replace the patched tag with that platform only; patch the index instead: {"image": "${im.registryURI}/${im.repository}${im.tag ? `:${im.tag}` : ""}", "platform": "all"} (PatchJob ${patchJobNameForIndex(im)} patches it from its reports)`,
        );
      if (!s.facts || !s.facts.conversion.ok)
        throw new HttpError(
          422,
          `report ${b.report} cannot be patched: ${s.facts?.conversion.ok === false ? s.facts.conversion.message : s.invalid?.message}`,
        );
      const spec = specFromReport(s.facts, s.facts.conversion.value);
      return { ...spec, source: Source.Manual, ...(dryRun ? { dryRun: true } : {}) };
    }
    if (typeof b.image !== "string")
      throw new HttpError(
        400,
        'give "image" (a reference) or "report" (a VulnerabilityReport name in this namespace)',
      );
    let ref;
    try {
      ref = parseImageRef(b.image);
    } catch (err) {
      throw new HttpError(400, `image: ${errorMessage(err)}`);
    }
    const platform = typeof b.platform === "string" ? b.platform : "linux/amd64";
    if (!/^(all|[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?)$/.test(platform))
      throw new HttpError(400, `platform: ${JSON.stringify(platform)} is not os/arch[/variant] or all`);
    return {
      image: {
        registryURI: ref.registry,
        repository: ref.repository,
        ...(ref.tag ? { tag: ref.tag } : {}),
        ...(ref.digest ? { digest: ref.digest } : {}),
        platform,
      },
      source: Source.Manual,
      ...(dryRun ? { dryRun: true } : {}),
    };
  }

  const apiRoute: Route = async (req, res, url) => {
    if (url.pathname === "/openapi.json" && req.method === "GET") {
      json(res, 200, openAPIDocument());
      return true;
    }
    if ((url.pathname === "/" || url.pathname === "/ui") && req.method === "GET") {
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "content-security-policy":
          "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
      });
      res.end(UI_HTML);
      return true;
    }
    if (url.pathname === "/ui.js" && req.method === "GET") {
      res.writeHead(200, {
        "content-type": "text/javascript; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      });
      res.end(UI_JS);
      return true;
    }
    if (!url.pathname.startsWith("/api/")) return false;
    const route = table.find((r) => r.re.test(url.pathname));
    if (!route) return (json(res, 404, { error: `no route ${url.pathname}` }), true);
    if (route.method !== req.method) {
      const allowed = table.filter((r) => r.re.test(url.pathname)).map((r) => r.method);
      if (!allowed.includes(req.method ?? "")) {
        res.setHeader("allow", allowed.join(", "));
        return (json(res, 405, { error: `${req.method} not allowed; use ${allowed.join(" or ")}` }), true);
      }
    }
    const r = table.find((x) => x.method === req.method && x.re.test(url.pathname))!;
    try {
      await r.handler(req, res, r.re.exec(url.pathname)!, url);
    } catch (err) {
      if (err instanceof HttpError) json(res, err.status, { error: err.message });
      else {
        log.error({ err: errorMessage(err), path: url.pathname }, "API request failed");
        json(res, 502, { error: `the Kubernetes API failed: ${apiMessage(err)}` });
      }
    }
    return true;
  };

  return {
    routes: [apiRoute],
    synced,
    async stop() {
      clearInterval(heartbeat);
      for (const s of subscribers) s.res.end();
      subscribers.clear();
      stop.abort();
      await Promise.all(running);
    },
  };
}

/** The routes the API serves (for the OpenAPI document's test). */
export const API_PATHS = [
  ["GET", "/api/v1/namespaces/{namespace}/reports"],
  ["GET", "/api/v1/namespaces/{namespace}/patchjobs"],
  ["POST", "/api/v1/namespaces/{namespace}/patchjobs"],
  ["GET", "/api/v1/namespaces/{namespace}/patchjobs/{name}"],
  ["POST", "/api/v1/namespaces/{namespace}/patchjobs/{name}/cancel"],
  ["GET", "/api/v1/namespaces/{namespace}/events"],
] as const;
