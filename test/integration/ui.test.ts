// The web UI in headless Chromium (Debian's chromium, driven by playwright-core), served
// by the real controller with --api, with a real worker, BuildKit, copa and registry
// behind it. No policy is installed, so nothing is patched until the Patch button asks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { AppsV1Api, CoreV1Api, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { chromium, type Browser, type Page } from "playwright-core";
import { execFile } from "node:child_process";
import { freePort, goBinary, REPO_ROOT, type Env } from "../../src/devenv/index.ts";
import { reportsApi } from "../../src/devenv/kube.ts";
import { installGrant, namespaces, ownImage, testEnv } from "../support/shared.ts";
import { honestReportForImage } from "../../src/devenv/honest-report.ts";
import { startCli, localWorkerArgs, type CliProcess } from "../../test/support/cli.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import { parseImageRef } from "../../src/api/index.ts";

let NS: string;
/** The vulnerable image, in a repository of this file's own. */
let IMAGE: string;
let REPO: string;
/** Screenshots land here (CI keeps the directory as the test's artifact). */
export const ARTIFACTS = process.env.TEST_ARTIFACTS ?? join(REPO_ROOT, "test-artifacts");

let env: Env;
let controller: CliProcess;
let worker: CliProcess;
let browser: Browser;
let page: Page;
let token: string;
let uiURL: string;

before(async () => {
  env = await testEnv();
  const kc = env.kubeConfig();
  NS = (await namespaces(env, "ui"))["ui"]!;
  REPO = `${NS}/debian`;
  IMAGE = (await ownImage(env, REPO)).ref;
  // A person's access, as RBAC grants it: patch and watch in one namespace.
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: "alice" } } });
  await rbac.createNamespacedRole({
    namespace: NS,
    body: {
      metadata: { name: "patcher" },
      rules: [
        {
          apiGroups: ["vulnpatcher.io"],
          resources: ["patchjobs"],
          verbs: ["get", "list", "watch", "create"],
        },
        {
          apiGroups: ["storage.sbomscanner.kubewarden.io"],
          resources: ["vulnerabilityreports"],
          verbs: ["get", "list"],
        },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: NS,
    body: {
      metadata: { name: "alice-patcher" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "patcher" },
      subjects: [{ kind: "ServiceAccount", name: "alice", namespace: NS }],
    },
  });
  token = (
    await core.createNamespacedServiceAccountToken({
      namespace: NS,
      name: "alice",
      // Made for the API (the controller's --api asks for this audience).
      body: { spec: { audiences: ["vuln-patcher"], expirationSeconds: 3600 } },
    })
  ).status!.token!;
  await reportsApi(kc).create(await honestReportForImage(IMAGE, "bookworm", NS));
  // The ad-hoc patch below names a tag no report names: allowed, as an administrator would.
  await installGrant(env, NS, { sources: [`${env.registryHost.replaceAll(".", "\\.")}/${REPO}`] });

  const [cport, wport] = [await freePort(), await freePort()];
  controller = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--namespaces",
      NS,
      "--policy-namespace",
      NS,
      "--leader-election-namespace",
      NS,
      "--listen",
      `127.0.0.1:${cport}`,
      "--api",
    ],
    { logDir: env.dir, name: "controller", listenPort: cport },
  );
  uiURL = `http://127.0.0.1:${cport}/`;
  worker = await startCli([...localWorkerArgs(env), "--listen", `127.0.0.1:${wport}`], {
    logDir: env.dir,
    name: "worker",
    listenPort: wport,
  });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await worker?.stop();
  await controller?.stop();
  await env?.stop();
});

async function connect(): Promise<void> {
  await page.goto(uiURL);
  await page.getByLabel("Kubernetes bearer token").fill(token);
  await page.getByLabel("Namespace").fill(NS);
  await page.getByRole("button", { name: "Load" }).click();
  await page.locator('tr[data-report="bookworm"]').waitFor({ timeout: 30_000 });
}

test("ui - the page lists the image's report; Patch starts a patch and its row reaches Succeeded with the digest, without a reload", async () => {
  await connect();
  const row = page.locator('tr[data-report="bookworm"]');
  assert.ok((await row.innerText()).includes(`${REPO}:bookworm-vuln`), await row.innerText());
  // The counts by severity are the report's (this honest report rates every finding
  // UNKNOWN, as Debian's changelogs carry no severity), and all of them are fixable.
  const cells = await row.locator("td").allInnerTexts();
  const [critical, high, medium, low, unknown, fixable] = cells.slice(2, 8).map(Number);
  assert.deepEqual([critical, high, medium, low], [0, 0, 0, 0], cells.join(" | "));
  assert.ok(unknown! > 0 && fixable === unknown, cells.join(" | "));
  // A mark that a reload would erase.
  await page.evaluate("window.__noReload = true");
  let navigations = 0;
  page.on("framenavigated", () => navigations++);

  await row.getByRole("button", { name: "Patch bookworm" }).click();
  const job = page.locator("tr[data-patchjob]").first();
  await job.locator('[data-field="phase"]', { hasText: "Succeeded" }).waitFor({ timeout: 600_000 });
  const patched = await job.locator('[data-field="patched"]').innerText();
  assert.match(patched, new RegExp(`${REPO}:bookworm-vuln-patched@sha256:[0-9a-f]{64}`));
  // The digest shown is the one the registry serves for the patched tag.
  const served = await new RegistryClient().manifestFor(parseImageRef(patched.split("@")[0]!));
  assert.equal(served?.digest, patched.split("@")[1]);
  // What sbomscanner's scan of the patched image says: none yet (the Verified condition).
  await job.locator('[data-field="proof"]', { hasText: "awaiting scan" }).waitFor({ timeout: 30_000 });
  assert.equal(navigations, 0, "no navigation");
  assert.equal(await page.evaluate("window.__noReload"), true, "no reload");
  assert.match(
    await row.locator("td.phase").innerText(),
    /Succeeded/,
    "the report's row follows its PatchJob",
  );
  const file = join(ARTIFACTS, "ui-patch-succeeded.png");
  await page.screenshot({ path: file, fullPage: true });
  process.stderr.write(`# screenshot: ${file}\n`);
});

test("ui - Dry run shows the plan; a failed patch shows its reason", async () => {
  await connect();
  const before = await page.locator("tr[data-patchjob]").count();
  await page.locator('tr[data-report="bookworm"]').getByRole("button", { name: "Dry run bookworm" }).click();
  await page
    .locator('tr[data-patchjob] [data-field="phase"]', { hasText: "Planned" })
    .first()
    .waitFor({ timeout: 120_000 });
  const planned = page.locator("tr[data-patchjob]", {
    has: page.locator('[data-field="phase"]', { hasText: "Planned" }),
  });
  assert.match(
    await planned.locator('[data-field="reason"]').innerText(),
    /dry run: would update \d+ packages/,
  );
  assert.equal(await page.locator("tr[data-patchjob]").count(), before + 1);

  // An ad-hoc patch of an image that is not there, through the same API the button uses.
  const r = await fetch(`${uiURL}api/v1/namespaces/${NS}/patchjobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ image: `${env.registryHost}/${REPO}:does-not-exist` }),
  });
  assert.equal(r.status, 201);
  const name = ((await r.json()) as { name: string }).name;
  const failed = page.locator(`tr[data-patchjob="${name}"]`);
  await failed.locator('[data-field="phase"]', { hasText: "Failed" }).waitFor({ timeout: 120_000 });
  assert.match(await failed.locator('[data-field="reason"]').innerText(), /ImageNotFound: .*does-not-exist/);
  await page.screenshot({ path: join(ARTIFACTS, "ui-failure-reason.png"), fullPage: true });
});

test("ui - a PatchJob created with kubectl (source manual) ends NoOp (AlreadyPatched: the patch made above), and the page shows it live, with its own rollout to a Deployment", async () => {
  await connect();
  // A Deployment running the vulnerable image (replicas 0: there is no node here); the
  // PatchJob asks for its own rollout (spec.rollout), which the controller carries out.
  await env
    .kubeConfig()
    .makeApiClient(AppsV1Api)
    .createNamespacedDeployment({
      namespace: NS,
      body: {
        metadata: { name: "shop" },
        spec: {
          replicas: 0,
          selector: { matchLabels: { app: "shop" } },
          template: {
            metadata: { labels: { app: "shop" } },
            spec: { containers: [{ name: "app", image: IMAGE }] },
          },
        },
      },
    });
  const manifest = [
    "apiVersion: vulnpatcher.io/v1alpha1",
    "kind: PatchJob",
    "metadata:",
    "  name: by-kubectl",
    `  namespace: ${NS}`,
    "spec:",
    "  source: manual",
    "  image:",
    `    registryURI: "${env.registryHost}"`,
    `    repository: ${REPO}`,
    "    tag: bookworm-vuln",
    "    platform: linux/amd64",
    "  rollout:",
    "    mode: Auto",
    "",
  ].join("\n");
  const out = await new Promise<string>((resolve, reject) => {
    const p = execFile(
      goBinary("kubectl"),
      ["--kubeconfig", env.kubeconfig, "apply", "-f", "-"],
      (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
    );
    p.stdin!.end(manifest);
  });
  assert.match(out, /patchjob\.vulnpatcher\.io\/by-kubectl created/);
  const row = page.locator('tr[data-patchjob="by-kubectl"]');
  await row.locator('[data-field="phase"]', { hasText: "NoOp" }).waitFor({ timeout: 600_000 });
  const patched = await row.locator('[data-field="patched"]').innerText();
  assert.match(patched, /bookworm-vuln-patched@sha256:[0-9a-f]{64}/);
  await row
    .locator('[data-field="rollout"]', { hasText: "rollout Auto: 1 updated" })
    .waitFor({ timeout: 60_000 });
  assert.match(
    (await row.locator('[data-field="rollout"]').getAttribute("title")) ?? "",
    /Deployment\/shop \(app\): Updated/,
  );
  const d = await env
    .kubeConfig()
    .makeApiClient(AppsV1Api)
    .readNamespacedDeployment({ namespace: NS, name: "shop" });
  assert.equal(
    d.spec!.template.spec!.containers[0]!.image,
    patched,
    "the Deployment runs what the row shows",
  );
});
