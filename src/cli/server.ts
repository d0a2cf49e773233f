// vuln-patcher server: the HTTP API and the web UI on their own (the controller serves
// them too with --api). Needs a kubeconfig whose identity may create TokenReviews and
// SubjectAccessReviews, read PatchJobs and reports, list and watch TenantGrants and
// Namespaces (the tenancy rules), and create and update PatchJobs.
import { parse } from "./args.ts";

import { newLogger, startHttpServer } from "../util/index.ts";
import { loadKubeConfig } from "../kube/index.ts";
import { kubeAuthenticator, startApi, tokenAudiences } from "../server/index.ts";
import { bounded, exitSoon, onShutdown } from "./shutdown.ts";

export const serverUsage = `Usage: vuln-patcher server [flags]

Serves the HTTP API (/api/v1/..., /openapi.json) and the web UI (/). Callers authenticate
with a Kubernetes bearer token; each call is authorized by a SubjectAccessReview.

  --kubeconfig PATH      default $KUBECONFIG, else in-cluster
  --listen HOST:PORT     default 127.0.0.1:8090 (the API and UI, /healthz, /readyz)
  --token-audience A     the audience callers' tokens must carry (default vuln-patcher:
                         kubectl create token NAME --audience vuln-patcher); "" for none
  --log-level LEVEL      default info`;

export async function serverCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    kubeconfig: { type: "string" },
    listen: { type: "string" },
    "token-audience": { type: "string" },
    "log-level": { type: "string" },
  });
  if (v.help) {
    process.stdout.write(serverUsage + "\n");
    return 0;
  }
  const log = newLogger("server", v["log-level"]);
  const kc = loadKubeConfig(v.kubeconfig);
  const shutdown = onShutdown(log);
  const api = await startApi({ kc, auth: kubeAuthenticator(kc, tokenAudiences(v["token-audience"])), log });
  let synced = false;
  void api.synced.then(() => (synced = true));
  const http = await startHttpServer({
    listen: v.listen ?? "127.0.0.1:8090",
    routes: api.routes,
    ready: () => synced,
  });
  log.info({ url: http.url }, "API and UI serving");
  process.stderr.write(`vuln-patcher UI: ${http.url}/\n`);
  await shutdown.requested;
  await http.close();
  await bounded(api.stop(), 5_000, "stopping the API", log);
  log.info("server stopped");
  exitSoon(0);
  return 0;
}
