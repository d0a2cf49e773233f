// Two controller processes: only the leader reconciles; SIGKILL the leader and the
// other takes over within the lease time, losing nothing.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { freePort, type Env } from "../../src/devenv/index.ts";
import { startCli, metricValue } from "../../test/support/cli.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { listPatchJobs, reportsApi } from "../../src/devenv/kube.ts";
import { installPolicy, namespaces, testEnv } from "../support/shared.ts";
import { messagesIn } from "../../test/support/stream.ts";
import { makeReport } from "../../test/fixtures/make-report.ts";
import { reportFault } from "../../test/support/faults.ts";

const LEASE_S = 4;
let env: Env;
let NS: Record<string, string>;

before(async () => {
  env = await testEnv();
  NS = await namespaces(env, "leader", "release");
  for (const ns of Object.values(NS)) await installPolicy(env, ns, { global: true });
});
after(() => env?.stop());

/** A controller process of this file: its namespace watched, its lease there too. */
function controllerArgs(ns: string, id: string, port: number, lease: string): string[] {
  return [
    "controller",
    "--kubeconfig",
    env.kubeconfig,
    "--nats-url",
    env.natsURL,
    "--namespaces",
    ns,
    "--policy-namespace",
    ns,
    "--leader-election-namespace",
    ns,
    "--lease-duration",
    lease,
    "--leader-election-id",
    id,
    "--listen",
    `127.0.0.1:${port}`,
  ];
}

test("leader election - one leader reconciles; when it is killed the standby takes over within the lease and nothing is lost", async (t) => {
  const kc = env.kubeConfig();
  const ns = NS.leader!;
  const portA = await freePort();
  const portB = await freePort();
  const a = await startCli(controllerArgs(ns, "ctl-a", portA, `${LEASE_S}s`), {
    logDir: env.dir,
    name: "ctl-a",
    listenPort: portA,
  });
  const b = await startCli(controllerArgs(ns, "ctl-b", portB, `${LEASE_S}s`), {
    logDir: env.dir,
    name: "ctl-b",
    listenPort: portB,
  });
  try {
    const leaderOf = async () => {
      const [ma, mb] = await Promise.all([a.metrics().catch(() => ""), b.metrics().catch(() => "")]);
      const la = metricValue(ma, "vuln_patcher_leader");
      const lb = metricValue(mb, "vuln_patcher_leader");
      return la === 1 && lb !== 1 ? "a" : lb === 1 && la !== 1 ? "b" : undefined;
    };
    const first = await waitFor("one leader", leaderOf, 30_000);
    const [leader, standby] = first === "a" ? [a, b] : [b, a];
    const reports = reportsApi(kc);
    for (let i = 0; i < 3; i++)
      await reports.create(makeReport({ name: `before-${i}`, namespace: ns, tag: `b${i}` }));
    await waitFor(
      "3 Queued",
      async () =>
        (await listPatchJobs(kc, ns)).filter((p) => p.status?.phase === "Queued").length === 3 || undefined,
    );
    assert.equal(
      metricValue(await standby.metrics(), "vuln_patcher_reconcile_total"),
      0,
      "the standby reconciled nothing",
    );
    assert.ok(metricValue(await leader.metrics(), "vuln_patcher_reconcile_total") >= 3);

    const killedAt = Date.now();
    leader.kill();
    await leader.exited;
    for (let i = 0; i < 3; i++)
      await reports.create(makeReport({ name: `after-${i}`, namespace: ns, tag: `a${i}` }));
    await waitFor(
      "the standby to lead",
      async () => metricValue(await standby.metrics(), "vuln_patcher_leader") === 1 || undefined,
      30_000,
      100,
    );
    const takeoverMs = Date.now() - killedAt;
    process.stderr.write(`# leader takeover after SIGKILL: ${takeoverMs} ms (lease ${LEASE_S}s)\n`);
    // The lease must expire as seen by the standby (it may have observed the record up to one retry period late).
    assert.ok(takeoverMs <= (LEASE_S + 2) * 1000, `takeover took ${takeoverMs} ms`);
    const all = await waitFor("6 Queued", async () => {
      const pjs = await listPatchJobs(kc, ns);
      return pjs.length === 6 && pjs.every((p) => p.status?.phase === "Queued") ? pjs : undefined;
    });
    assert.equal(all.length, 6);
    const messages = await messagesIn(env.natsURL, ns);
    assert.equal(messages, 6, "nothing published twice, nothing lost");
    reportFault(t, {
      fault: "leader-killed",
      injected: `SIGKILL to the leading controller (lease ${LEASE_S}s), 3 reports created right after`,
      expected: "the standby leads after the lease; all 6 reports Queued; 6 messages",
      observed: `standby leading ${takeoverMs} ms after the kill; ${all.length} Queued; ${messages} messages`,
    });
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("leader election - a clean shutdown releases the lease so the standby takes over at once", async () => {
  const portA = await freePort();
  const portB = await freePort();
  const args = (id: string, port: number) => controllerArgs(NS.release!, id, port, "15s");
  const a = await startCli(args("a", portA), { logDir: env.dir, name: "a", listenPort: portA });
  await waitFor(
    "a leads",
    async () => metricValue(await a.metrics(), "vuln_patcher_leader") === 1 || undefined,
    30_000,
  );
  const b = await startCli(args("b", portB), { logDir: env.dir, name: "b", listenPort: portB });
  try {
    const t = Date.now();
    await a.stop("SIGTERM");
    assert.equal(await a.exited, 0, "a clean exit");
    await waitFor(
      "b leads",
      async () => metricValue(await b.metrics(), "vuln_patcher_leader") === 1 || undefined,
      30_000,
      100,
    );
    const ms = Date.now() - t;
    assert.ok(ms < 10_000, `takeover after release took ${ms} ms, lease is 15 s`);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
