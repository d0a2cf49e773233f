// The demo's pipeline, in this process: the controller (with the API and web UI on a
// local port), a worker with the local executor, and a token for the person trying it.
import { hostname } from "node:os";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CoreV1Api, RbacAuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { Env } from "../devenv/index.ts";
import { startController } from "../controller/index.ts";
import { connectNats } from "../queue/index.ts";
import { localExecutor } from "../patch/index.ts";
import { RegistryClient } from "../registry/index.ts";
import { DEFAULT_TOKEN_AUDIENCE, kubeAuthenticator, startApi } from "../server/index.ts";
import { startWorker } from "../worker/index.ts";

import { type Logger, startHttpServer } from "../util/index.ts";

export const DEMO_NAMESPACE = "default";
const NS = DEMO_NAMESPACE;

export interface DemoPipeline {
  uiURL: string;
  tokenFile: string;
  registry: RegistryClient;
  stop(): Promise<void>;
}

export async function startDemoPipeline(
  env: Env,
  dir: string,
  copa: string,
  log: Logger,
): Promise<DemoPipeline> {
  const kc = env.kubeConfig();
  const nc = await connectNats({ url: env.natsURL, name: "vuln-patcher-demo" });
  const api = await startApi({
    kc,
    auth: kubeAuthenticator(kc, [DEFAULT_TOKEN_AUDIENCE]),
    log: log.child({ component: "api" }),
  });
  const controller = await startController({ kc, nc, log: log.child({ component: "controller" }) });
  const http = await startHttpServer({
    listen: "127.0.0.1:0",
    registry: controller.registry,
    healthy: controller.healthy,
    ready: controller.ready,
    routes: api.routes,
  });
  const tokenFile = join(dir, "ui-token");
  await writeFile(tokenFile, (await demoUserToken(kc)) + "\n", { mode: 0o600 });
  const registry = new RegistryClient();
  const worker = await startWorker({
    kc,
    nc,
    executor: localExecutor({ copaPath: copa }),
    registry,
    buildkitAddr: env.buildkitAddr,
    identity: `demo-worker@${hostname()}`,
    log: log.child({ component: "worker" }),
  });
  return {
    uiURL: http.url,
    tokenFile,
    registry,
    async stop() {
      await worker.stop();
      await controller.stop();
      await http.close();
      await api.stop();
      await nc.close();
    },
  };
}

/**
 * A ServiceAccount for the person trying the demo, allowed what the UI does in the demo
 * namespace (and nothing else), and a token for it (kept in a file, never printed).
 */
async function demoUserToken(kc: KubeConfig): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const name = "demo-user";
  const ignoreExists = (err: unknown) => {
    if ((err as { code?: number }).code !== 409) throw err;
  };
  await core
    .createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name } } })
    .catch(ignoreExists);
  await rbac
    .createNamespacedRole({
      namespace: NS,
      body: {
        metadata: { name },
        rules: [
          {
            apiGroups: ["vulnpatcher.io"],
            resources: ["patchjobs"],
            verbs: ["get", "list", "watch", "create"],
          },
          { apiGroups: ["vulnpatcher.io"], resources: ["patchjobs/status"], verbs: ["update"] },
          {
            apiGroups: ["storage.sbomscanner.kubewarden.io"],
            resources: ["vulnerabilityreports"],
            verbs: ["get", "list"],
          },
        ],
      },
    })
    .catch(ignoreExists);
  await rbac
    .createNamespacedRoleBinding({
      namespace: NS,
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
        subjects: [{ kind: "ServiceAccount", name, namespace: NS }],
      },
    })
    .catch(ignoreExists);
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: NS,
    name,
    // For the API only: the apiserver does not take a token of this audience.
    body: { spec: { audiences: [DEFAULT_TOKEN_AUDIENCE], expirationSeconds: 24 * 3600 } },
  });
  return tr.status!.token!;
}
