// The chart as tests use it: rendered with helm, applied with kubectl, and the tokens of
// the ServiceAccounts it makes, as kubeconfig files.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { CoreV1Api } from "@kubernetes/client-node";
import { ensureGoTools, goBinary, REPO_ROOT, type Env } from "../../src/devenv/index.ts";

const run = promisify(execFile);
export const CHART = join(REPO_ROOT, "charts", "vuln-patcher");

export type Doc = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: any;
};

export async function helm(args: string[]): Promise<string> {
  await ensureGoTools(["helm"]);
  const { stdout } = await run(goBinary("helm"), args, { maxBuffer: 32 * 1024 * 1024 });
  return stdout;
}

/** `helm template` of the chart, CRDs included, as objects. */
export async function renderChart(release: string, namespace: string, args: string[] = []): Promise<Doc[]> {
  const out = await helm(["template", release, CHART, "--namespace", namespace, "--include-crds", ...args]);
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Doc)
    .filter(Boolean);
}

export function kubectl(env: Env, args: string[], input?: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const p = execFile(
      goBinary("kubectl"),
      ["--kubeconfig", env.kubeconfig, ...args],
      { maxBuffer: 32 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`${stderr}`)) : resolve(stdout)),
    );
    if (input !== undefined) p.stdin!.end(input);
  });
}

/** Server-side apply of rendered objects. */
export async function applyDocs(env: Env, docs: Doc[], extra: string[] = []): Promise<string> {
  return kubectl(
    env,
    ["apply", "--server-side", ...extra, "-f", "-"],
    docs.map((d) => JSON.stringify(d)).join("\n"),
  );
}

/** A kubeconfig file that authenticates as a ServiceAccount, with a token from the TokenRequest API. */
export async function serviceAccountKubeconfig(env: Env, namespace: string, name: string): Promise<string> {
  const core = env.kubeConfig().makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    namespace,
    name,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const ca = readFileSync(env.controlPlane!.caCert).toString("base64");
  const file = join(env.dir, `${namespace}-${name}.kubeconfig`);
  await writeFile(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: c",
      "  cluster:",
      `    server: ${env.controlPlane!.server}`,
      `    certificate-authority-data: ${ca}`,
      "users:",
      `- name: ${name}`,
      "  user:",
      `    token: ${tr.status!.token}`,
      "contexts:",
      "- name: c",
      "  context:",
      "    cluster: c",
      `    user: ${name}`,
      "current-context: c",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return file;
}
