// P7: patterns made to backtrack, against 10,000-character names. Two measures:
// - the decision itself (choosePolicy + decideReport, as the report reconciler runs it)
//   for a report whose tag and repository are 10,000 characters: the slowest of many;
// - a real controller (the CLI) with those policies, deciding reports whose tags are the
//   longest valid ones, while /healthz is asked every 20 ms: the slowest answer.
import { CustomObjectsApi } from "@kubernetes/client-node";
import {
  defaultPolicy,
  parseReport,
  patchJobSpecSchema,
  POLICY_PLURAL,
  type PatchPolicy,
} from "../src/api/index.ts";
import {
  choosePolicy,
  compilePolicy,
  decideReport,
  reportFacts,
  type ReportSummary,
} from "../src/decide/index.ts";
import { setup } from "../src/devenv/index.ts";
import { installAllCRDs } from "../src/devenv/crds.ts";
import { createNamespace, reportsApi } from "../src/devenv/kube.ts";
import { waitFor } from "../src/devenv/wait.ts";
import { makeReport } from "../test/fixtures/make-report.ts";
import { metricValue, startControllerCli } from "../test/support/cli.ts";

export const PATHOLOGICAL = ["(a+){1,40}", "(a|a)*b", "a*a*a*a*a*a*b"];

function policy(name: string, namespace: string, tag: string): PatchPolicy {
  const p = defaultPolicy(namespace);
  return {
    ...p,
    metadata: { name, namespace },
    spec: { ...p.spec, selector: { ...p.spec.selector, tag, repository: tag } },
  };
}

/**
 * The slowest single decision, in ms, over `rounds` reports with 10,000-character names,
 * once the code is warm (as in a controller that has been running: 50 decisions on
 * 1,000-character names first); the very first, cold decision is reported beside it.
 */
export function decisionTimes(rounds: number): { maxMs: number; medianMs: number; coldFirstMs: number } {
  const compiled = PATHOLOGICAL.map((p, i) => {
    const r = compilePolicy(policy(`p${i}`, "default", p), "default");
    if (!r.ok) throw new Error(r.problems.join("; "));
    return r.value;
  });
  const schema = patchJobSpecSchema();
  const parsed = parseReport(makeReport({ name: "long", namespace: "default" }));
  if (!parsed.ok) throw new Error(parsed.message);
  const facts = reportFacts(parsed.value);
  const times: number[] = [];
  let coldFirstMs = 0;
  // Names no parser here would accept: the patterns see them anyway (the worst case).
  // Made once, so the loop measures the decision and not the making of its input.
  const names = [1_000, 999, 10_000, 9_999].map((n) => "a".repeat(n));
  for (let i = -50; i < rounds; i++) {
    const long = names[(i < 0 ? 0 : 2) + (i % 2 ? 1 : 0)]!;
    const f = { ...facts, imageMetadata: { ...facts.imageMetadata, tag: long, repository: long } };
    const t = performance.now();
    const chosen = choosePolicy(compiled, {
      namespace: "default",
      labels: {},
      registryURI: f.imageMetadata.registryURI,
      repository: long,
      tag: long,
      severity: f.severity,
    });
    const summary: ReportSummary = { deleting: false, facts: f };
    decideReport({
      namespace: "default",
      name: "long",
      report: summary,
      reportsSynced: true,
      ownOutput: false,
      policy: chosen
        ? { kind: "patch", policy: chosen, settings: { name: chosen.name, namespace: chosen.namespace } }
        : { kind: "none" },
      settings: {},
      schema,
      now: new Date(),
    });
    const ms = performance.now() - t;
    if (i === -50) coldFirstMs = ms;
    if (i >= 0) times.push(ms);
  }
  times.sort((a, b) => a - b);
  return { maxMs: times.at(-1)!, medianMs: times[Math.floor(times.length / 2)]!, coldFirstMs };
}

/** A controller with the pathological policies deciding `n` reports; /healthz asked throughout. */
export async function healthzUnderLoad(
  n: number,
): Promise<{ maxHealthzMs: number; answers: number; failures: number; decided: number }> {
  await using env = await setup({ buildkit: false });
  const kc = env.kubeConfig();
  await installAllCRDs(kc, { defaultPolicy: false });
  await createNamespace(kc, "patterns");
  const api = kc.makeApiClient(CustomObjectsApi);
  for (const [i, p] of PATHOLOGICAL.entries())
    await api.createNamespacedCustomObject({
      group: "vulnpatcher.io",
      version: "v1alpha1",
      plural: POLICY_PLURAL,
      namespace: "patterns",
      body: policy(`p${i}`, "patterns", p),
    });
  const ctl = await startControllerCli(env, ["--log-level", "warn"]);
  let maxMs = 0;
  let answers = 0;
  let failures = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const t = performance.now();
      const ok = await fetch(`${ctl.url!}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(
        (r) => r.ok,
        () => false,
      );
      maxMs = Math.max(maxMs, performance.now() - t);
      answers++;
      if (!ok) failures++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    // The longest valid tag (128), made to match as slowly as a backtracking engine could.
    const tag = "a".repeat(127) + "c";
    for (let i = 0; i < n; i++)
      await reportsApi(kc).create(
        makeReport({ name: `long-${i}`, namespace: "patterns", tag, digestSeed: `long-${i}` }),
      );
    // Decided = reconciled (a report no policy matches writes nothing): the controller's own count.
    const decided = await waitFor(
      "every report decided",
      async () => {
        const text = await (await fetch(`${ctl.url!}/metrics`)).text();
        const n2 = metricValue(text, "vuln_patcher_reconcile_total", 'kind="report"');
        return n2 >= n ? n2 : undefined;
      },
      300_000,
      200,
    ).catch(() => 0);
    return { maxHealthzMs: maxMs, answers, failures, decided };
  } finally {
    polling = false;
    await poll;
    await ctl.stop();
  }
}
