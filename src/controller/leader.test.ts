// Two controller processes: only the leader reconciles; SIGKILL the leader and the
// other takes over within the lease time, losing nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, freePort } from "../../test/env/index.ts";
import { installAllCRDs } from "../../test/env/crds.ts";
import { startCli, metricValue } from "../../test/env/cli.ts";
import { waitFor } from "../../test/env/wait.ts";
import { createNamespace, listPatchJobs, reportsApi } from "../../test/env/kube.ts";
import { messagesIn } from "../../test/env/stream.ts";
import { makeReport } from "../../test/fixtures/make-report.ts";
import { reportFault } from "../../test/env/faults.ts";

const LEASE_S = 4;

test("leader election - one leader reconciles; when it is killed the standby takes over within the lease and nothing is lost", async (t) => {
  await using env = await setup({ registry: false });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  const ns = "leader";
  await createNamespace(kc, ns);
  const portA = await freePort();
  const portB = await freePort();
  const a = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--lease-duration",
      `${LEASE_S}s`,
      "--leader-election-id",
      "ctl-a",
      "--listen",
      `127.0.0.1:${portA}`,
    ],
    { logDir: env.dir, name: "ctl-a", listenPort: portA },
  );
  const b = await startCli(
    [
      "controller",
      "--kubeconfig",
      env.kubeconfig,
      "--nats-url",
      env.natsURL,
      "--lease-duration",
      `${LEASE_S}s`,
      "--leader-election-id",
      "ctl-b",
      "--listen",
      `127.0.0.1:${portB}`,
    ],
    { logDir: env.dir, name: "ctl-b", listenPort: portB },
  );
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
  await using env = await setup({ registry: false });
  const kc = env.kubeConfig();
  await installAllCRDs(kc);
  const portA = await freePort();
  const portB = await freePort();
  const args = (id: string, port: number) => [
    "controller",
    "--kubeconfig",
    env.kubeconfig,
    "--nats-url",
    env.natsURL,
    "--lease-duration",
    "15s",
    "--leader-election-id",
    id,
    "--listen",
    `127.0.0.1:${port}`,
  ];
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
