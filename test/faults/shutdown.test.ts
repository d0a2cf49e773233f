// Every long-running command stops when asked: SIGTERM is logged and the process exits
// within its bound, with its dependencies up and with the apiserver and NATS gone; a
// second signal exits at once. The processes are the compiled CLI, as a Pod runs them.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { freePort, goBinary, setup, type Env } from "../../src/devenv/index.ts";
import { installAllCRDs } from "../../src/devenv/crds.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { startCli, metricValue, type CliProcess } from "../support/cli.ts";
import { reportFault } from "../support/faults.ts";

let env: Env;
const BOUND_MS = 10_000;

before(async () => {
  env = await setup({ registry: false });
  await installAllCRDs(env.kubeConfig());
});
after(() => env?.stop());

async function controller(name: string): Promise<CliProcess> {
  const port = await freePort();
  const c = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--lease-duration",
      "6s",
      "--leader-election-id",
      name,
      "--listen",
      `127.0.0.1:${port}`,
      "--shutdown-timeout",
      "8s",
    ],
    { logDir: env.dir, name, listenPort: port },
  );
  await waitFor(
    `${name} to lead`,
    async () => metricValue(await c.metrics(), "vuln_patcher_leader") === 1,
    30_000,
  );
  return c;
}

async function worker(name: string): Promise<CliProcess> {
  const port = await freePort();
  return startCli(
    [
      "worker",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--executor",
      "local",
      "--copa",
      goBinary("copa"),
      "--buildkit-addr",
      "unix:///nonexistent/buildkitd.sock",
      "--identity",
      name,
      "--listen",
      `127.0.0.1:${port}`,
      "--shutdown-grace",
      "3s",
      "--shutdown-timeout",
      "8s",
    ],
    { logDir: env.dir, name, listenPort: port },
  );
}

/** SIGTERM: the signal is logged, and the process exits 0 within the bound. */
async function stopsWithin(p: CliProcess, what: string): Promise<number> {
  const t0 = Date.now();
  p.child.kill("SIGTERM");
  const code = await Promise.race([
    p.exited,
    new Promise<"late">((r) => setTimeout(() => r("late"), BOUND_MS)),
  ]);
  const ms = Date.now() - t0;
  const log = await readFile(p.logFile, "utf8");
  assert.notEqual(code, "late", `${what} still running ${BOUND_MS} ms after SIGTERM:\n${log.slice(-2000)}`);
  assert.equal(code, 0, `${what} exit code`);
  assert.match(log, /received SIGTERM: stopping/, `${what} logs the signal`);
  return ms;
}

test("shutdown - with everything up: the controller (leading) and the worker exit within the bound, the lease given up", async () => {
  const c = await controller("up-ctl");
  const w = await worker("up-worker");
  const cms = await stopsWithin(c, "the controller");
  const wms = await stopsWithin(w, "the worker");
  assert.match(await readFile(c.logFile, "utf8"), /released the lease/);
  assert.match(await readFile(w.logFile, "utf8"), /stopping: no patch in flight/);
  process.stderr.write(`# SIGTERM -> exit, everything up: controller ${cms} ms, worker ${wms} ms\n`);
});

test("shutdown - a second signal exits at once", async () => {
  const c = await controller("twice");
  // Stop NATS so the first stop has something to wait for; the second signal must not wait.
  await env.nats!.component.stop();
  try {
    c.child.kill("SIGINT");
    await waitFor("the first signal logged", async () =>
      /received SIGINT/.test(await readFile(c.logFile, "utf8")),
    );
    const t0 = Date.now();
    c.child.kill("SIGINT");
    const code = await c.exited;
    const ms = Date.now() - t0;
    assert.equal(code, 130);
    assert.ok(ms < 2_000, `exited ${ms} ms after the second signal`);
    assert.match(await readFile(c.logFile, "utf8"), /received SIGINT again: exiting now/);
  } finally {
    await env.nats!.component.start();
  }
});

test("shutdown - with the apiserver and NATS gone: each process logs the signal and exits within the bound", async (t) => {
  const c = await controller("gone-ctl");
  const w = await worker("gone-worker");
  await env.nats!.component.stop();
  await env.controlPlane!.apiserver.stop();
  try {
    // Let both notice (the worker's fetch fails, the controller's lease renewal fails).
    await waitFor(
      "the worker to lose NATS",
      async () => /NATS disconnect/.test(await readFile(w.logFile, "utf8")),
      20_000,
    );
    const [cms, wms] = await Promise.all([stopsWithin(c, "the controller"), stopsWithin(w, "the worker")]);
    reportFault(t, {
      fault: "shutdown-dependencies-gone",
      injected: "kube-apiserver and nats-server stopped, then SIGTERM to a leading controller and a worker",
      expected: `each logs the signal and exits 0 within ${BOUND_MS} ms`,
      observed: `controller exited after ${cms} ms, worker after ${wms} ms`,
    });
  } finally {
    await env.controlPlane!.apiserver.start();
    await env.nats!.component.start();
  }
});
