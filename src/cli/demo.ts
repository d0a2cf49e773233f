// vuln-patcher demo: the whole pipeline on this machine, on the real components. It
// brings the environment up, installs the CRDs, starts the controller and a worker,
// creates a VulnerabilityReport for the vulnerable Debian image from real data (CVE
// ids from Debian's changelogs), and follows it to a verified patched image.
import { hostname } from "node:os";
import { setup, goBinary, type Env } from "../../test/env/index.ts";
import { installAllCRDs } from "../../test/env/crds.ts";
import { honestReport } from "../../test/env/honest-report.ts";
import { reportsApi } from "../../test/env/kube.ts";
import { parseImageRef } from "../api/imageref.ts";
import type { PatchJob } from "../api/patchjob.ts";
import { patchJobClient } from "../kube/patchjobs.ts";
import { RegistryClient } from "../registry/client.ts";
import { readPackageDB } from "../registry/pkgdb.ts";
import { connectNats } from "../queue/nats.ts";
import { startController } from "../controller/manager.ts";
import { startWorker } from "../worker/manager.ts";
import { localExecutor } from "../patch/local.ts";
import { newLogger } from "../util/log.ts";
import { parse } from "./args.ts";
import { shutdownSignal } from "./signals.ts";
import { keepDevEnv, prepareDevDir } from "./dev.ts";
import { renderTable } from "./patch.ts";
import { compareDpkg } from "../api/version.ts";
import { startApi } from "../server/api.ts";
import { kubeAuthenticator } from "../server/auth.ts";
import { CoreV1Api, RbacAuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const demoUsage = `Usage: vuln-patcher demo [--keep] [--name NAME]

Runs the whole pipeline on local real components and prints a before/after table:
sbomscanner VulnerabilityReport -> controller -> PatchJob -> NATS JetStream -> worker
-> copa on BuildKit -> registry -> verified PatchJob status.

  --keep        afterwards, keep the environment, the controller, the worker and the web UI
                running until Ctrl-C (then stop the environment with 'vuln-patcher dev down --name NAME')
  --name NAME   the environment's name (default demo)
Logs of the controller and worker go to stderr as JSON; set LOG_LEVEL=warn to quiet them.`;

const NS = "default";

export async function demoCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, { keep: { type: "boolean" }, name: { type: "string", default: "demo" } });
  if (v.help) {
    process.stdout.write(demoUsage + "\n");
    return 0;
  }
  if (process.getuid?.() !== 0)
    throw new Error("the demo runs BuildKit, which needs root here: run it as root");
  const name = v.name as string;
  const out = (s: string) => process.stdout.write(s + "\n");
  const t0 = Date.now();
  const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  const signal = shutdownSignal();
  const log = newLogger("demo", process.env.LOG_LEVEL ?? "warn");

  out(
    `[1/5] starting the real-component environment "${name}" (etcd, kube-apiserver, kube-controller-manager, NATS JetStream, registry, BuildKit)...`,
  );
  const dir = await prepareDevDir(name);
  const env: Env = await setup({ dir, buildkit: true });
  let kept = false;
  try {
    const kc = env.kubeConfig();
    out(
      `      up in ${since()}: apiserver ${env.controlPlane!.server}, NATS ${env.natsURL}, registry ${env.registryHost}, BuildKit ${env.buildkitAddr}`,
    );
    out(
      `[2/5] installing the PatchJob and PatchPolicy CRDs, the default policy (patch every fixable report) and sbomscanner's VulnerabilityReport test CRD`,
    );
    await installAllCRDs(kc);
    out(`[3/5] starting the controller and a worker (local executor: copa ${goBinary("copa")})`);
    const nc = await connectNats({ url: env.natsURL, name: "vuln-patcher-demo" });
    const api = await startApi({ kc, auth: kubeAuthenticator(kc), log: log.child({ component: "api" }) });
    const controller = await startController({
      kc,
      nc,
      log: log.child({ component: "controller" }),
      listen: "127.0.0.1:0",
      routes: api.routes,
    });
    const tokenFile = join(dir, "ui-token");
    await writeFile(tokenFile, (await demoUserToken(kc)) + "\n", { mode: 0o600 });
    out(`      web UI: ${controller.server!.url}/  (token to paste: cat ${tokenFile}; namespace ${NS})`);
    const registry = new RegistryClient();
    const worker = await startWorker({
      kc,
      nc,
      executor: localExecutor({ copaPath: goBinary("copa") }),
      registry,
      buildkitAddr: env.buildkitAddr,
      identity: `demo-worker@${hostname()}`,
      log: log.child({ component: "worker" }),
    });

    const image = parseImageRef(env.images!.vulnerable);
    const src = await registry.manifestFor(image);
    const db = await readPackageDB(registry, image, src!.manifest.layers, { debianVersion: true });
    out(
      `[4/5] creating a VulnerabilityReport for ${env.images!.vulnerable} (Debian ${db.debianVersion ?? "12"})`,
    );
    out(`      from real data: packages older than bookworm-security, CVE ids from their Debian changelogs`);
    const report = await honestReport({
      name: "debian-bookworm-vuln",
      namespace: NS,
      registryURI: env.registryHost,
      repository: image.repository,
      tag: image.tag!,
      digest: src!.digest,
      installed: db.packages,
      debianVersion: db.debianVersion,
    });
    const vulns = (report.report as { results: Array<{ vulnerabilities: Array<{ packageName: string }> }> })
      .results[0]!.vulnerabilities;
    out(`      ${vulns.length} findings in ${new Set(vulns.map((x) => x.packageName)).size} packages`);
    await reportsApi(kc).create(report);

    out(`[5/5] following the pipeline:`);
    const client = patchJobClient(kc);
    let lastPhase = "";
    const seen = new Set<string>();
    let pj: PatchJob | undefined;
    const step = (key: string, text: string) => {
      if (seen.has(key)) return;
      seen.add(key);
      out(`      ${since().padStart(6)}  ${text}`);
    };
    step("report", "report seen by the controller");
    const deadline = Date.now() + 15 * 60_000;
    while (!signal.aborted && Date.now() < deadline) {
      pj = await client.get(NS, "debian-bookworm-vuln");
      const phase = pj?.status?.phase ?? "";
      if (pj && !seen.has("pj"))
        step("pj", `PatchJob ${NS}/${pj.metadata.name} created (generation ${pj.metadata.generation})`);
      if (phase && phase !== lastPhase) {
        lastPhase = phase;
        if (phase === "Queued") step("queued", "PatchJob queued on NATS JetStream");
        if (phase === "Running" || phase === "Succeeded")
          step("queued", `PatchJob queued on NATS JetStream (at ${pj!.status?.queuedTime ?? "?"})`);
        if (phase === "Running") step("running", `patching: copa on BuildKit (worker ${pj!.status?.worker})`);
        if (phase === "Succeeded") {
          step("running", `patching: copa on BuildKit (worker ${pj!.status?.worker})`);
          step("pushed", `pushed ${pj!.status?.patchedImage?.reference}`);
          step(
            "verified",
            `verified: the tag holds ${pj!.status?.patchedImage?.digest}, packages read back from its layers`,
          );
        }
      }
      if (phase === "Succeeded" || phase === "NoOp" || phase === "Failed") break;
      await new Promise((r) => setTimeout(r, 300));
    }
    if (signal.aborted) {
      out("interrupted");
      return 130;
    }
    if (!pj || pj.status?.phase !== "Succeeded")
      throw new Error(
        `the demo PatchJob ended ${pj?.status?.phase ?? "nowhere"}: ${pj?.status?.message ?? "timed out"}`,
      );

    // The table: every finding of the report, against the patched image's packages.
    const patchedRef = parseImageRef(pj.status!.patchedImage!.reference!);
    const patched = await registry.manifestFor(patchedRef);
    const after = await readPackageDB(registry, patchedRef, patched!.manifest.layers);
    const rows = [["PACKAGE", "CVE", "INSTALLED", "FIXED IN", "NOW", "STATUS"]];
    let fixed = 0;
    for (const x of vulns as Array<{
      packageName: string;
      cve: string;
      installedVersion: string;
      fixedVersions: string[];
    }>) {
      const now = after.packages.get(x.packageName) ?? "-";
      const ok = now !== "-" && compareDpkg(now, x.fixedVersions[0]!) >= 0;
      if (ok) fixed++;
      rows.push([
        x.packageName,
        x.cve,
        x.installedVersion,
        x.fixedVersions[0]!,
        now,
        ok ? "fixed" : "remaining",
      ]);
    }
    out("");
    out(renderTable(rows).trimEnd());
    out("");
    out(
      `${fixed} of ${vulns.length} findings fixed; patched image ${pj.status!.patchedImage!.reference}@${pj.status!.patchedImage!.digest}`,
    );
    out(`PatchJob status: ${pj.status!.message}`);
    out(`total wall time ${since()}`);
    out("");
    const stopAll = async () => {
      await worker.stop();
      await controller.stop();
      await api.stop();
      await nc.close();
    };
    if (v.keep) {
      await keepDevEnv(name, env);
      kept = true;
      out("Look around (the environment, controller, worker and web UI stay up until Ctrl-C):");
      out(
        `  web UI: ${controller.server!.url}/  (token: cat ${tokenFile}; namespace ${NS}) - Patch or Dry run the image`,
      );
      out(`  export KUBECONFIG=${env.kubeconfig}`);
      out(`  ${goBinary("kubectl")} get pj -o wide`);
      out(`  ${goBinary("kubectl")} describe pj debian-bookworm-vuln`);
      out(`  skopeo inspect --tls-verify=false docker://${pj.status!.patchedImage!.reference}`);
      out(`  vuln-patcher dev down --name ${name}    # when done`);
      await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
      await stopAll();
    } else {
      await stopAll();
      out(
        `To explore afterwards, run 'npm run demo -- --keep' (kubectl --kubeconfig <env>/kubeconfig get pj).`,
      );
    }
    return 0;
  } finally {
    if (!kept) {
      await env.stop();
      // Not kept: nothing to come back to (each run left ~770 MB of BuildKit and registry data).
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }
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
    body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
  });
  return tr.status!.token!;
}
