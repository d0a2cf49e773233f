// What a PatchPolicy means, pure: checking a spec, matching a report, choosing among
// several matching policies, rendering the target tag, and the time window.
//
// Choosing (documented in docs/policies.md, tested in policy.test.ts): among the
// policies that match a report, a policy in the report's own namespace beats one that
// applies to all namespaces; then the more specific (more selector fields set, a label
// selector counting one per requirement); then the name, alphabetically. Disabled
// policies take part: a Disabled policy that wins switches patching off for its reports.
import {
  isValidTag,
  type LabelSelector,
  Mode,
  type LibrarySettings,
  type PackageUpdate,
  type PatchPolicy,
  type PatchPolicySpec,
  severityRank,
} from "../api/index.ts";
import { RE2JS } from "re2js";
import { checkTimeZone, parseCron, wallClock, type Cron } from "./cron.ts";

/** A policy checked and ready to match: its patterns compiled, its schedule parsed. */
export interface CompiledPolicy {
  policy: PatchPolicy;
  name: string;
  namespace: string;
  mode: Mode;
  /** Applies to every namespace (allNamespaces, honoured in the controller's namespace only). */
  global: boolean;
  registry?: Pattern;
  repository?: Pattern;
  tag?: Pattern;
  cron?: Cron;
  timeZone: string;
  specificity: number;
}

export type CompileResult = { ok: true; value: CompiledPolicy } | { ok: false; problems: string[] };

/** A compiled pattern: whole-value match, linear time. */
export interface Pattern {
  test(value: string): boolean;
  source: string;
}

/**
 * Patterns are RE2 (the syntax the CRD's CEL check compiles), matched by re2js: linear
 * time in the input whatever the pattern, so no policy can stall the controller's only
 * thread (JavaScript's own engine backtracks: `(a+){1,40}` on a 24-character tag took
 * ~300 ms and doubled every 2 characters).
 */
function pattern(field: string, src: string | undefined, problems: string[]): Pattern | undefined {
  if (src === undefined || src === "") return undefined;
  try {
    // The whole value, as the CRD documents.
    const re = RE2JS.compile(`^(?:${src})$`);
    return { test: (v) => re.matches(v), source: src };
  } catch (err) {
    problems.push(`spec.selector.${field}: ${(err as Error).message}`);
    return undefined;
  }
}

const HHMM = /^([01][0-9]|2[0-3]):[0-5][0-9]$/;

export function compilePolicy(policy: PatchPolicy, controllerNamespace: string): CompileResult {
  const s = policy.spec ?? {};
  const problems: string[] = [];
  const sel = s.selector ?? {};
  const registry = pattern("registry", sel.registry, problems);
  const repository = pattern("repository", sel.repository, problems);
  const tag = pattern("tag", sel.tag, problems);
  const mode = s.mode ?? Mode.Auto;
  if (!Object.values(Mode).includes(mode)) problems.push(`spec.mode: unknown mode ${JSON.stringify(mode)}`);
  let cron: Cron | undefined;
  const timeZone = s.schedule?.timeZone ?? "UTC";
  if (s.schedule) {
    try {
      cron = parseCron(s.schedule.cron);
    } catch (err) {
      problems.push(`spec.schedule.cron: ${(err as Error).message}`);
    }
    try {
      checkTimeZone(timeZone);
    } catch {
      problems.push(`spec.schedule.timeZone: unknown time zone ${JSON.stringify(timeZone)}`);
    }
  } else if (mode === Mode.Scheduled) problems.push("spec.schedule is required when spec.mode is Scheduled");
  const w = s.limits?.window;
  if (w) {
    if (!HHMM.test(w.start) || !HHMM.test(w.end))
      problems.push("spec.limits.window: start and end are HH:MM");
    try {
      checkTimeZone(w.timeZone ?? "UTC");
    } catch {
      problems.push(`spec.limits.window.timeZone: unknown time zone ${JSON.stringify(w.timeZone)}`);
    }
  }
  if (s.target?.tagSuffix && s.target.tagTemplate)
    problems.push("spec.target: set tagSuffix or tagTemplate, not both");
  if (s.target?.tagTemplate) {
    const probe = renderTagTemplate(s.target.tagTemplate, { tag: "1.0", digest: "sha256:" + "0".repeat(64) });
    if (!isValidTag(probe))
      problems.push(`spec.target.tagTemplate: renders ${JSON.stringify(probe)}, not a valid tag`);
  }
  if (problems.length) return { ok: false, problems };
  const labels = sel.reportLabels;
  const specificity =
    (registry ? 1 : 0) +
    (repository ? 1 : 0) +
    (tag ? 1 : 0) +
    (sel.minSeverity ? 1 : 0) +
    Object.keys(labels?.matchLabels ?? {}).length +
    (labels?.matchExpressions?.length ?? 0);
  const namespace = policy.metadata.namespace ?? "";
  return {
    ok: true,
    value: {
      policy,
      name: policy.metadata.name,
      namespace,
      mode,
      global: !!s.allNamespaces && namespace === controllerNamespace,
      ...(registry ? { registry } : {}),
      ...(repository ? { repository } : {}),
      ...(tag ? { tag } : {}),
      ...(cron ? { cron } : {}),
      timeZone,
      specificity,
    },
  };
}

export function labelsMatch(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const v = labels[e.key];
    switch (e.operator) {
      case "In":
        if (!has || !(e.values ?? []).includes(v!)) return false;
        break;
      case "NotIn":
        if (has && (e.values ?? []).includes(v!)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** What matching needs to know of a report. */
export interface PolicySubject {
  namespace: string;
  labels: Record<string, string>;
  registryURI: string;
  repository: string;
  tag?: string;
  /** Highest severity among the report's findings, and among the fixable ones. */
  severity: { any?: string; fixable?: string };
}

export function policyMatches(p: CompiledPolicy, r: PolicySubject): boolean {
  if (!p.global && p.namespace !== r.namespace) return false;
  if (p.registry && !p.registry.test(r.registryURI)) return false;
  if (p.repository && !p.repository.test(r.repository)) return false;
  if (p.tag && !p.tag.test(r.tag ?? "")) return false;
  const sel = p.policy.spec.selector ?? {};
  if (!labelsMatch(sel.reportLabels, r.labels)) return false;
  if (sel.minSeverity) {
    const worst = (sel.fixableOnly ?? true) ? r.severity.fixable : r.severity.any;
    if (worst === undefined || severityRank(worst) < severityRank(sel.minSeverity)) return false;
  }
  return true;
}

/** The policy for a report: see the rule at the top of this file. Undefined: no policy matches. */
export function choosePolicy(
  policies: Iterable<CompiledPolicy>,
  r: PolicySubject,
): CompiledPolicy | undefined {
  let best: CompiledPolicy | undefined;
  for (const p of policies) {
    if (!policyMatches(p, r)) continue;
    if (!best || better(p, best, r.namespace)) best = p;
  }
  return best;
}

function better(a: CompiledPolicy, b: CompiledPolicy, ns: string): boolean {
  const localA = a.namespace === ns ? 1 : 0;
  const localB = b.namespace === ns ? 1 : 0;
  if (localA !== localB) return localA > localB;
  if (a.specificity !== b.specificity) return a.specificity > b.specificity;
  return `${a.namespace}/${a.name}` < `${b.namespace}/${b.name}`;
}

export function renderTagTemplate(
  template: string,
  v: { tag?: string; digest?: string; now?: Date },
): string {
  const date = (v.now ?? new Date()).toISOString().slice(0, 10).replaceAll("-", "");
  return template
    .replaceAll("{{tag}}", v.tag || "latest")
    .replaceAll("{{date}}", date)
    .replaceAll("{{digest}}", (v.digest ?? "").replace(/^sha256:/, "").slice(0, 12));
}

/** Where a policy sends the patch of an image: a full reference, or a tag suffix. */
export function policyTarget(
  p: PatchPolicySpec,
  image: { registryURI: string; repository: string; tag?: string; digest?: string },
  now = new Date(),
): { reference?: string; tagSuffix?: string } | undefined {
  const t = p.target;
  if (!t) return undefined;
  if (!t.tagTemplate && !t.repository && !t.registry)
    return t.tagSuffix ? { tagSuffix: t.tagSuffix } : undefined;
  const tag = t.tagTemplate
    ? renderTagTemplate(t.tagTemplate, { tag: image.tag, digest: image.digest, now })
    : `${image.tag || "latest"}${t.tagSuffix ?? "-patched"}`;
  return { reference: `${t.registry ?? image.registryURI}/${t.repository ?? image.repository}:${tag}` };
}

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number) as [number, number];
  return h * 60 + m;
}

/**
 * 0 when `now` is inside the window (start inclusive, end exclusive; a window may wrap
 * midnight; start == end means all day), else the milliseconds until it opens.
 */
export function msUntilWindow(w: { start: string; end: string; timeZone?: string }, now: Date): number {
  const wc = wallClock(now, w.timeZone ?? "UTC");
  const cur = wc.hour * 60 + wc.minute;
  const start = minutesOf(w.start);
  const end = minutesOf(w.end);
  if (start === end) return 0;
  const inside = start < end ? cur >= start && cur < end : cur >= start || cur < end;
  if (inside) return 0;
  const wait = (start - cur + 1440) % 1440;
  return wait * 60_000 - (now.getTime() % 60_000);
}

/** The plan of a dry run, from the updates the report asks for: package, versions and CVEs. */
export function describePlan(updates: PackageUpdate[]): string {
  if (updates.length === 0) return "nothing to update";
  const cves = new Set(updates.flatMap((u) => u.vulnerabilityIDs ?? []));
  const list = updates
    .slice(0, 10)
    .map((u) => `${u.name} ${u.installedVersion} -> ${u.fixedVersion}`)
    .join(", ");
  return `would update ${updates.length} packages (${list}${updates.length > 10 ? ", ..." : ""}), fixing ${cves.size} CVEs`;
}

/** A policy's library settings (packageTypes, libraryPatchLevel), as the decision takes them. */
export function policyLibraries(
  spec: Pick<PatchPolicySpec, "packageTypes" | "libraryPatchLevel">,
): LibrarySettings {
  return {
    ...(spec.packageTypes?.length ? { packageTypes: spec.packageTypes } : {}),
    ...(spec.libraryPatchLevel ? { patchLevel: spec.libraryPatchLevel } : {}),
  };
}

/** What the report reconciler needs to know about the policy for one report. */
export type PolicyVerdict =
  | { kind: "none" }
  | { kind: "disabled"; policy: CompiledPolicy }
  /** A Scheduled policy between its runs. */
  | { kind: "waiting"; policy: CompiledPolicy }
  | {
      kind: "patch";
      policy: CompiledPolicy;
      settings: {
        name: string;
        namespace: string;
        dryRun?: boolean;
        target?: { reference?: string; tagSuffix?: string };
        libraries?: LibrarySettings;
      };
    };
