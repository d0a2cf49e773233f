import { test } from "node:test";
import assert from "node:assert/strict";
import {
  choosePolicy,
  compilePolicy,
  describePlan,
  labelsMatch,
  msUntilWindow,
  policyMatches,
  policyTarget,
  renderTagTemplate,
  type CompiledPolicy,
  type PolicySubject,
} from "./policy.ts";
import { defaultPolicy, type PatchPolicy, type PatchPolicySpec } from "../api/index.ts";
import { CronError, nextRun, parseCron } from "./cron.ts";

const CTL = "vuln-patcher";

function policy(name: string, spec: PatchPolicySpec, namespace = "team-a"): PatchPolicy {
  return { apiVersion: "vulnpatcher.io/v1alpha1", kind: "PatchPolicy", metadata: { name, namespace }, spec };
}

function compiled(name: string, spec: PatchPolicySpec, namespace = "team-a"): CompiledPolicy {
  const r = compilePolicy(policy(name, spec, namespace), CTL);
  assert.ok(r.ok, r.ok ? "" : r.problems.join("; "));
  return r.value;
}

const subject = (o: Partial<PolicySubject> = {}): PolicySubject => ({
  namespace: "team-a",
  labels: { team: "a", env: "prod" },
  registryURI: "registry.example:5000",
  repository: "library/debian",
  tag: "12.5",
  severity: { any: "CRITICAL", fixable: "HIGH" },
  ...o,
});

const next = (expr: string, tz: string, after: string) =>
  nextRun(parseCron(expr), tz, new Date(after))?.toISOString();

test("cron - fields, ranges, steps, lists and names", () => {
  const c = "*/15 2-4 1,15 JAN-MAR mon-fri";
  // Both day fields restricted: either matches. 2027-01-01 is a Friday (a weekday and the 1st).
  assert.equal(next(c, "UTC", "2026-12-31T23:00:00Z"), "2027-01-01T02:00:00.000Z");
  assert.equal(next(c, "UTC", "2027-01-01T02:00:00Z"), "2027-01-01T02:15:00.000Z");
  assert.equal(next(c, "UTC", "2027-01-01T04:45:00Z"), "2027-01-04T02:00:00.000Z", "Monday, a weekday");
  assert.equal(
    next(c, "UTC", "2027-03-31T04:45:00Z"),
    "2028-01-01T02:00:00.000Z",
    "none from April to December",
  );
  assert.equal(next("0 0 * * 7", "UTC", "2026-11-30T00:00:00Z"), "2026-12-06T00:00:00.000Z", "7 is Sunday");
  assert.equal(next("5-59/20 * * * *", "UTC", "2026-11-30T10:00:00Z"), "2026-11-30T10:05:00.000Z");
  assert.equal(next("5-59/20 * * * *", "UTC", "2026-11-30T10:05:00Z"), "2026-11-30T10:25:00.000Z");
});

test("cron - invalid expressions say what is wrong", () => {
  for (const [expr, says] of [
    ["61 * * * *", /minute: 61/],
    ["* * *", /expected 5 fields/],
    ["* * * * * *", /expected 5 fields/],
    ["* 25 * * *", /hour: 25/],
    ["* * * * FOO", /FOO|day/i],
    ["*/0 * * * *", /step|0/i],
  ] as const)
    assert.throws(
      () => parseCron(expr),
      (e: unknown) => e instanceof CronError && says.test(e.message),
      expr,
    );
});

test("cron - daylight-saving changes: runs are neither missed nor doubled (Europe/Berlin, America/New_York)", () => {
  // The week of the spring change: Monday 00:30 in Berlin is 22:30 UTC on Sunday (CEST).
  assert.equal(next("30 0 * * 1", "Europe/Berlin", "2026-03-28T00:00:00Z"), "2026-03-29T22:30:00.000Z");
  // 02:30 does not exist on 2026-03-29 in Berlin: it runs at 03:00 CEST, then daily at 02:30.
  assert.equal(next("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z"), "2026-03-29T01:00:00.000Z");
  assert.equal(next("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z"), "2026-03-30T00:30:00.000Z");
  // 02:30 happens twice on 2026-10-25 in Berlin: once (the first, CEST), then CET.
  assert.equal(next("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z"), "2026-10-25T00:30:00.000Z");
  assert.equal(next("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z"), "2026-10-26T01:30:00.000Z");
  // New York: 2026-03-08 skips 02:00-03:00, 2026-11-01 repeats 01:00-02:00.
  assert.equal(next("30 2 * * *", "America/New_York", "2026-03-07T05:00:00Z"), "2026-03-07T07:30:00.000Z");
  assert.equal(next("30 2 * * *", "America/New_York", "2026-03-07T07:30:00Z"), "2026-03-08T07:00:00.000Z");
  assert.equal(next("30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z"), "2026-03-09T06:30:00.000Z");
  assert.equal(next("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z"), "2026-11-01T05:30:00.000Z");
  assert.equal(next("30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z"), "2026-11-02T06:30:00.000Z");
  // An hourly schedule across the fall-back hour: both 01:00s, none doubled otherwise.
  const runs: string[] = [];
  let t = "2026-11-01T04:30:00Z";
  for (let k = 0; k < 4; k++) runs.push((t = next("0 * * * *", "America/New_York", t)!));
  assert.deepEqual(runs, [
    "2026-11-01T05:00:00.000Z",
    "2026-11-01T06:00:00.000Z",
    "2026-11-01T07:00:00.000Z",
    "2026-11-01T08:00:00.000Z",
  ]);
});

test("cron - the next run, in UTC and in a time zone with DST", () => {
  const c = parseCron("30 3 * * *");
  assert.equal(
    nextRun(c, "UTC", new Date("2026-11-29T21:00:00Z"))?.toISOString(),
    "2026-11-30T03:30:00.000Z",
  );
  assert.equal(
    nextRun(c, "UTC", new Date("2026-11-30T03:30:00Z"))?.toISOString(),
    "2026-12-01T03:30:00.000Z",
  );
  // Berlin is UTC+1 in winter, UTC+2 in summer.
  assert.equal(
    nextRun(c, "Europe/Berlin", new Date("2026-11-29T21:00:00Z"))?.toISOString(),
    "2026-11-30T02:30:00.000Z",
  );
  assert.equal(
    nextRun(c, "Europe/Berlin", new Date("2026-07-01T00:00:00Z"))?.toISOString(),
    "2026-07-01T01:30:00.000Z",
  );
  // Weekdays only: from Friday evening, Monday.
  const wd = parseCron("0 9 * * 1-5");
  assert.equal(
    nextRun(wd, "UTC", new Date("2026-11-27T18:00:00Z"))?.toISOString(),
    "2026-11-30T09:00:00.000Z",
  );
  // Both day fields restricted: either matches (the 1st, or any Sunday).
  const either = parseCron("0 0 1 * 0");
  assert.equal(
    nextRun(either, "UTC", new Date("2026-11-27T00:00:00Z"))?.toISOString(),
    "2026-11-29T00:00:00.000Z",
  );
  // Every minute: the next minute boundary.
  assert.equal(
    nextRun(parseCron("* * * * *"), "UTC", new Date("2026-11-29T21:00:59.900Z"))?.toISOString(),
    "2026-11-29T21:01:00.000Z",
  );
  assert.equal(nextRun(parseCron("0 0 31 2 *"), "UTC", new Date("2026-01-01T00:00:00Z")), undefined, "never");
});

test("policy - compile reports every problem with its field", () => {
  const r = compilePolicy(
    policy("bad", {
      selector: { repository: "library/(", tag: "(?<x" },
      mode: "Scheduled",
      schedule: { cron: "61 * * * *", timeZone: "Mars/Olympus" },
      limits: { window: { start: "25:00", end: "06:00" } },
      target: { tagTemplate: "{{tag}}/bad" },
    }),
    CTL,
  );
  assert.equal(r.ok, false);
  if (r.ok) return;
  const text = r.problems.join("\n");
  assert.match(text, /spec\.selector\.repository: .*/);
  assert.match(text, /spec\.selector\.tag: /);
  assert.match(text, /spec\.schedule\.cron: minute: 61 is out of range/);
  assert.match(text, /spec\.schedule\.timeZone: unknown time zone "Mars\/Olympus"/);
  assert.match(text, /spec\.limits\.window: start and end are HH:MM/);
  assert.match(text, /spec\.target\.tagTemplate: renders "1\.0\/bad", not a valid tag/);
  const noSchedule = compilePolicy(policy("s", { mode: "Scheduled" }), CTL);
  assert.ok(!noSchedule.ok && /spec\.schedule is required/.test(noSchedule.problems[0]!));
});

test("policy - patterns match the whole value", () => {
  const p = compiled("p", { selector: { repository: "library/deb.*", tag: "12(\\.[0-9]+)?" } });
  assert.ok(policyMatches(p, subject()));
  assert.ok(!policyMatches(p, subject({ repository: "mirror/library/debian" })), "no implicit prefix");
  assert.ok(!policyMatches(p, subject({ tag: "12.5-slim" })), "no implicit suffix");
  assert.ok(!policyMatches(p, subject({ tag: undefined })));
  const reg = compiled("r", { selector: { registry: "registry\\.example(:5000)?" } });
  assert.ok(policyMatches(reg, subject()));
  assert.ok(!policyMatches(reg, subject({ registryURI: "ghcr.io" })));
});

test("policy - a repository pattern and a minimum severity: in, and out", () => {
  const p = compiled("prod-debian", { selector: { repository: "library/debian", minSeverity: "HIGH" } });
  assert.ok(policyMatches(p, subject()), "fixable HIGH meets HIGH");
  assert.ok(!policyMatches(p, subject({ repository: "library/alpine" })), "another repository");
  assert.ok(
    !policyMatches(p, subject({ severity: { any: "CRITICAL", fixable: "MEDIUM" } })),
    "fixable below",
  );
  assert.ok(!policyMatches(p, subject({ severity: {} })), "nothing at all");
  const any = compiled("any", { selector: { minSeverity: "CRITICAL", fixableOnly: false } });
  assert.ok(policyMatches(any, subject()), "fixableOnly false counts the unfixable CRITICAL");
  assert.ok(!policyMatches(compiled("f", { selector: { minSeverity: "CRITICAL" } }), subject()));
});

test("policy - label selectors: matchLabels and every operator", () => {
  const l = { team: "a", env: "prod" };
  assert.ok(labelsMatch(undefined, l));
  assert.ok(labelsMatch({ matchLabels: { team: "a" } }, l));
  assert.ok(!labelsMatch({ matchLabels: { team: "b" } }, l));
  assert.ok(labelsMatch({ matchExpressions: [{ key: "env", operator: "In", values: ["prod", "qa"] }] }, l));
  assert.ok(!labelsMatch({ matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }] }, l));
  assert.ok(labelsMatch({ matchExpressions: [{ key: "x", operator: "NotIn", values: ["prod"] }] }, l));
  assert.ok(labelsMatch({ matchExpressions: [{ key: "team", operator: "Exists" }] }, l));
  assert.ok(!labelsMatch({ matchExpressions: [{ key: "team", operator: "DoesNotExist" }] }, l));
});

test("policy - scope: its own namespace, or all namespaces only from the controller's namespace", () => {
  const local = compiled("local", {});
  assert.ok(policyMatches(local, subject()));
  assert.ok(!policyMatches(local, subject({ namespace: "team-b" })));
  const globalHere = compiled("g", { allNamespaces: true }, CTL);
  assert.ok(policyMatches(globalHere, subject({ namespace: "team-b" })));
  const globalElsewhere = compiled("g2", { allNamespaces: true }, "team-a");
  assert.equal(globalElsewhere.global, false, "allNamespaces is honoured only in the controller's namespace");
  assert.ok(!policyMatches(globalElsewhere, subject({ namespace: "team-b" })));
});

test("policy - several match: own namespace first, then the most specific, then the name", () => {
  const global = compiled("default", { allNamespaces: true }, CTL);
  const globalSpecific = compiled(
    "g-debian",
    { allNamespaces: true, selector: { repository: "library/.*", tag: ".*" } },
    CTL,
  );
  const localLoose = compiled("team-all", {});
  const localRepo = compiled("team-debian", { selector: { repository: "library/debian" } });
  const localRepo2 = compiled("a-team-debian", { selector: { repository: "library/.*" } });
  const localLabels = compiled("team-labels", {
    selector: { reportLabels: { matchLabels: { team: "a", env: "prod" } } },
  });
  const s = subject();
  assert.equal(choosePolicy([global, globalSpecific], s)?.name, "g-debian", "more specific");
  assert.equal(
    choosePolicy([globalSpecific, localLoose], s)?.name,
    "team-all",
    "own namespace beats a global one",
  );
  assert.equal(choosePolicy([localLoose, localRepo], s)?.name, "team-debian");
  assert.equal(choosePolicy([localRepo, localRepo2], s)?.name, "a-team-debian", "a tie: the name");
  assert.equal(choosePolicy([localRepo2, localRepo], s)?.name, "a-team-debian", "order does not matter");
  assert.equal(
    choosePolicy([localRepo, localLabels], s)?.name,
    "team-labels",
    "two label requirements beat one pattern",
  );
  assert.equal(choosePolicy([localRepo], subject({ repository: "x/y" })), undefined, "none matches");
});

test("policy - the chart's default policy matches every fixable report everywhere", () => {
  const p = compilePolicy(defaultPolicy(CTL), CTL);
  assert.ok(p.ok);
  assert.ok(
    policyMatches(p.value, subject({ namespace: "anything", labels: {}, severity: { fixable: "UNKNOWN" } })),
  );
  assert.equal(p.value.mode, "Auto");
  assert.equal(p.value.specificity, 0, "any other policy that matches is more specific");
});

test("policy - targets: suffix, template, another repository or registry", () => {
  const image = {
    registryURI: "r:5000",
    repository: "library/debian",
    tag: "12",
    digest: "sha256:" + "ab".repeat(32),
  };
  const now = new Date("2026-11-29T21:00:00Z");
  assert.equal(policyTarget({}, image), undefined);
  assert.deepEqual(policyTarget({ target: { tagSuffix: "-fixed" } }, image), { tagSuffix: "-fixed" });
  assert.deepEqual(policyTarget({ target: { tagTemplate: "{{tag}}-patched-{{date}}" } }, image, now), {
    reference: "r:5000/library/debian:12-patched-20261129",
  });
  assert.deepEqual(policyTarget({ target: { repository: "patched/debian" } }, image, now), {
    reference: "r:5000/patched/debian:12-patched",
  });
  assert.deepEqual(
    policyTarget({ target: { registry: "other:5000", tagTemplate: "{{digest}}" } }, image, now),
    {
      reference: "other:5000/library/debian:abababababab",
    },
  );
  assert.equal(renderTagTemplate("{{tag}}-p", {}), "latest-p");
});

test("policy - the time window, wrapping midnight, in a time zone", () => {
  const w = { start: "22:00", end: "06:00" };
  assert.equal(msUntilWindow(w, new Date("2026-11-29T23:30:00Z")), 0);
  assert.equal(msUntilWindow(w, new Date("2026-11-30T05:59:00Z")), 0);
  assert.equal(msUntilWindow(w, new Date("2026-11-30T06:00:00Z")), 16 * 3600_000, "end is exclusive");
  assert.equal(msUntilWindow({ start: "09:00", end: "17:00" }, new Date("2026-11-29T08:59:30Z")), 30_000);
  assert.equal(msUntilWindow({ start: "00:00", end: "00:00" }, new Date()), 0, "start == end: all day");
  // 22:00 in Berlin is 21:00 UTC in winter.
  assert.equal(msUntilWindow({ ...w, timeZone: "Europe/Berlin" }, new Date("2026-11-29T21:10:00Z")), 0);
  assert.equal(
    msUntilWindow({ ...w, timeZone: "Europe/Berlin" }, new Date("2026-11-29T20:00:00Z")),
    3600_000,
  );
});

test("policy - the plan of a dry run names packages, versions and the CVE count", () => {
  assert.equal(describePlan([]), "nothing to update");
  assert.equal(
    describePlan([
      {
        name: "liblzma5",
        installedVersion: "5.4.1-1",
        fixedVersion: "5.4.1-1+deb12u1",
        vulnerabilityIDs: ["CVE-1", "CVE-2"],
      },
      {
        name: "perl-base",
        installedVersion: "5.36.0-7",
        fixedVersion: "5.36.0-7+deb12u2",
        vulnerabilityIDs: ["CVE-2"],
      },
    ]),
    "would update 2 packages (liblzma5 5.4.1-1 -> 5.4.1-1+deb12u1, perl-base 5.36.0-7 -> 5.36.0-7+deb12u2), fixing 2 CVEs",
  );
});

test("policy - patterns are RE2: nested repetition is fine (linear time), Perl-only syntax is refused with the reason", () => {
  const withTag = (tag: string) => subject({ tag });
  for (const [src, yes, no] of [
    ["(a+){1,40}", "a".repeat(30), "a".repeat(10_000) + "b"],
    ["(a|a)*b", "a".repeat(10_000) + "b", "a".repeat(10_000)],
    ["a*a*a*a*a*a*b", "aaab", "a".repeat(10_000)],
    ["v[0-9]+(\\.[0-9]+)*", "v1.2.3", "v1..2"],
  ] as const) {
    const r = compilePolicy(policy("p", { selector: { tag: src } }), CTL);
    assert.ok(r.ok, `${src}: ${!r.ok && r.problems.join("; ")}`);
    if (!r.ok) continue;
    assert.equal(policyMatches(r.value, withTag(yes)), true, `${src} matches ${yes.slice(0, 20)}`);
    assert.equal(policyMatches(r.value, withTag(no)), false, `${src} does not match ${no.slice(0, 20)}...`);
  }
  for (const [src, says] of [
    ["(?=lookahead)", /invalid or unsupported Perl syntax/],
    ["(a)\\1", /invalid escape sequence/],
    ["library/(", /missing closing \)/],
  ] as const) {
    const r = compilePolicy(policy("p", { selector: { tag: src } }), CTL);
    assert.ok(!r.ok && says.test(r.problems[0]!), `${src}: ${!r.ok ? r.problems[0] : "accepted"}`);
  }
});
