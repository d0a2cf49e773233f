// The API's routes. Each handler authenticates the caller, asks the apiserver whether
// the caller may do the same with kubectl (SubjectAccessReview), then answers from the
// caches or writes with the server's identity.
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  GROUP,
  markCancelled,
  type PatchJob,
  Phase,
  PLURAL,
  Reason,
  REPORT_GROUP,
  REPORT_PLURAL,
  Source,
} from "../api/index.ts";
import { MANAGED_BY, patchJobNameForImage, type ReportSummary, SOURCE_LABEL } from "../decide/index.ts";
import { apiMessage, ignoreConflict, isConflict, type PatchJobClient, type Store } from "../kube/index.ts";

import type { Logger } from "../util/index.ts";
import { adhocSpec } from "./adhoc.ts";
import { bearerToken, tokenExpiry, type Access, type Authenticator, type Caller } from "./auth.ts";
import { API_PATHS, pathPattern } from "./paths.ts";
import { HttpError, json, readJSON } from "./respond.ts";
import type { Tenancy } from "../controller/index.ts";
import type { EventHub } from "./stream.ts";
import { patchJobView, reportView } from "./views.ts";

export interface RouteContext {
  auth: Authenticator;
  client: PatchJobClient;
  patchJobs: Store<PatchJob> & { values(): Iterable<PatchJob> };
  reports: Store<ReportSummary> & { keys(): Iterable<string> };
  /** The tenancy rules, as the controller applies them (src/controller/tenancy.ts). */
  tenancy: Pick<Tenancy, "verdict">;
  hub: EventHub;
  log: Logger;
}

type Params = { ns: string; name: string };
type Handler = (c: RouteContext, req: IncomingMessage, res: ServerResponse, p: Params) => Promise<void>;
export interface ApiRoute {
  method: string;
  re: RegExp;
  handler: Handler;
}

async function caller(c: RouteContext, req: IncomingMessage): Promise<Caller> {
  const token = bearerToken(req.headers.authorization);
  if (!token)
    throw new HttpError(401, "a Kubernetes bearer token is required (Authorization: Bearer <token>)");
  const who = await c.auth.authenticate(token);
  if (!who) throw new HttpError(401, "the token was not accepted by the Kubernetes API server");
  return who;
}

async function authorize(c: RouteContext, who: Caller, a: Access): Promise<void> {
  if (await c.auth.allowed(who, a)) return;
  const what = `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ""}${a.name ? ` ${a.name}` : ""}`;
  throw new HttpError(403, `${who.username} may not ${what} in namespace ${a.namespace}`);
}

const pj = (verb: Access["verb"], namespace: string, name?: string, subresource?: string): Access => ({
  verb,
  group: GROUP,
  resource: PLURAL,
  namespace,
  ...(name ? { name } : {}),
  ...(subresource ? { subresource } : {}),
});

const listReports: Handler = async (c, req, res, { ns }) => {
  await authorize(c, await caller(c, req), {
    verb: "list",
    group: REPORT_GROUP,
    resource: REPORT_PLURAL,
    namespace: ns,
  });
  const items = [];
  for (const key of c.reports.keys()) {
    const s = c.reports.get(key);
    if (s && key.startsWith(`${ns}/`)) items.push(reportView(key, s, c.patchJobs.get(key)));
  }
  items.sort((a, b) => a.name.localeCompare(b.name));
  json(res, 200, { items });
};

const listPatchJobs: Handler = async (c, req, res, { ns }) => {
  await authorize(c, await caller(c, req), pj("list", ns));
  const items = [...c.patchJobs.values()]
    .filter((p) => p.metadata.namespace === ns)
    .map(patchJobView)
    .sort((a, b) => a.name.localeCompare(b.name));
  json(res, 200, { items });
};

const getPatchJob: Handler = async (c, req, res, { ns, name }) => {
  await authorize(c, await caller(c, req), pj("get", ns, name));
  const found = c.patchJobs.get(`${ns}/${name}`) ?? (await c.client.get(ns, name));
  if (!found) throw new HttpError(404, `PatchJob ${ns}/${name} not found`);
  json(res, 200, patchJobView(found));
};

const createPatchJob: Handler = async (c, req, res, { ns }) => {
  const who = await caller(c, req);
  await authorize(c, who, pj("create", ns));
  const spec = await adhocSpec(ns, await readJSON(req), c.reports, (a) => authorize(c, who, a));
  // The same rules the controller applies before publishing, answered now: the caller
  // learns at once, and nothing is created that would only end Denied.
  const verdict = c.tenancy.verdict({ metadata: { name: "", namespace: ns }, spec });
  if (!verdict.ok) throw new HttpError(403, verdict.message, verdict.reason);
  const name = patchJobNameForImage("manual", spec.image!) + "-" + Date.now().toString(36);
  try {
    const created = await c.client.create({
      metadata: {
        name: name.slice(0, 253),
        namespace: ns,
        labels: { ...MANAGED_BY, [SOURCE_LABEL]: Source.Manual },
        annotations: { "vulnpatcher.io/requested-by": who.username },
      },
      spec,
    });
    c.log.info(
      { patchjob: `${ns}/${created.metadata.name}`, user: who.username, dryRun: !!spec.dryRun },
      "ad-hoc patch requested",
    );
    json(res, 201, patchJobView(created));
  } catch (err) {
    throw new HttpError(isConflict(err) ? 409 : 422, `the PatchJob was not created: ${apiMessage(err)}`);
  }
};

const cancelPatchJob: Handler = async (c, req, res, { ns, name }) => {
  const who = await caller(c, req);
  await authorize(c, who, pj("update", ns, name, "status"));
  const found = await c.client.get(ns, name);
  if (!found) throw new HttpError(404, `PatchJob ${ns}/${name} not found`);
  const phase = found.status?.phase ?? Phase.Pending;
  if (found.status?.reason === Reason.Grouped)
    throw new HttpError(
      409,
      `PatchJob ${ns}/${name} is one platform of index PatchJob ${found.status.group}: cancel that one (it patches every platform together)`,
    );
  if (phase !== Phase.Pending && phase !== Phase.Queued)
    throw new HttpError(
      409,
      `PatchJob ${ns}/${name} is ${phase}: only a Pending or Queued patch can be cancelled`,
    );
  let cancelled: PatchJob;
  try {
    cancelled = await c.client.updateStatus(
      found,
      markCancelled(found, Reason.Cancelled, `cancelled by ${who.username}`),
    );
  } catch (err) {
    if (isConflict(err))
      throw new HttpError(
        409,
        `PatchJob ${ns}/${name} changed meanwhile (a worker may have started it); look again`,
      );
    throw err;
  }
  // An index PatchJob: its platforms' PatchJobs end with it.
  for (const p of found.spec.platforms ?? []) {
    const member = p.patchJob ? await c.client.get(ns, p.patchJob) : undefined;
    if (member?.status?.reason !== Reason.Grouped) continue;
    const why = `its index PatchJob ${name} was cancelled by ${who.username}`;
    await ignoreConflict(c.client.updateStatus(member, markCancelled(member, Reason.Cancelled, why)));
  }
  json(res, 200, patchJobView(cancelled));
};

const events: Handler = async (c, req, res, { ns }) => {
  let gone = false;
  res.on("close", () => (gone = true));
  const token = bearerToken(req.headers.authorization) ?? "";
  await authorize(c, await caller(c, req), pj("watch", ns));
  const expiresAt = tokenExpiry(token);
  // Asked again while the stream lasts: a revoked token or a removed RoleBinding ends it.
  const recheck = async () => {
    const who = await c.auth.authenticate(token);
    return !!who && (await c.auth.allowed(who, pj("watch", ns)));
  };
  if (!gone) c.hub.subscribe(ns, res, { recheck, ...(expiresAt ? { expiresAt } : {}) });
};

const HANDLERS: Record<(typeof API_PATHS)[number][1], Partial<Record<string, Handler>>> = {
  "/api/v1/namespaces/{namespace}/reports": { GET: listReports },
  "/api/v1/namespaces/{namespace}/patchjobs": { GET: listPatchJobs, POST: createPatchJob },
  "/api/v1/namespaces/{namespace}/patchjobs/{name}": { GET: getPatchJob },
  "/api/v1/namespaces/{namespace}/patchjobs/{name}/cancel": { POST: cancelPatchJob },
  "/api/v1/namespaces/{namespace}/events": { GET: events },
};

/** The route table, built from API_PATHS (so the OpenAPI document and the router agree). */
export const ROUTES: ApiRoute[] = API_PATHS.map(([method, path]) => ({
  method,
  re: pathPattern(path),
  handler: HANDLERS[path][method]!,
}));

/** Dispatch an /api/ request: 404, 405 with Allow, or the handler (errors as JSON). */
export async function dispatch(
  c: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  const matching = ROUTES.filter((r) => r.re.test(path));
  if (!matching.length) return json(res, 404, { error: `no route ${path}` });
  const r = matching.find((x) => x.method === req.method);
  if (!r) {
    const allowed = matching.map((x) => x.method);
    res.setHeader("allow", allowed.join(", "));
    return json(res, 405, { error: `${req.method} not allowed; use ${allowed.join(" or ")}` });
  }
  const m = r.re.exec(path)!;
  try {
    await r.handler(c, req, res, { ns: m[1]!, name: m[3] ?? "" });
  } catch (err) {
    if (err instanceof HttpError)
      json(res, err.status, { error: err.message, ...(err.reason ? { reason: err.reason } : {}) });
    else {
      c.log.error({ err: apiMessage(err), path }, "API request failed");
      json(res, 502, { error: `the Kubernetes API failed: ${apiMessage(err)}` });
    }
  }
}
