// The web UI: one page, no framework and no build step (a table of reports, a table of
// PatchJobs, two buttons and an event stream do not need one). It talks only to the
// API on the same origin with the token the user pastes (kept in sessionStorage, sent as
// a bearer header, never in a URL), and follows changes over the SSE stream, read with
// fetch so that the token stays in a header. Served with a CSP that allows only this
// page's own script and styles (no inline script).
export const UI_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vuln-patcher</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1b1f24; background: #fff; }
  body { margin: 0 auto; max-width: 80rem; padding: 1rem 1.5rem 3rem; }
  h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
  h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
  form { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; }
  label { display: flex; flex-direction: column; font-size: .85rem; gap: .2rem; }
  input { font: inherit; padding: .35rem .5rem; border: 1px solid #8c959f; border-radius: 4px; min-width: 14rem; }
  button { font: inherit; padding: .35rem .8rem; border-radius: 4px; border: 1px solid #1f6feb; background: #1f6feb; color: #fff; cursor: pointer; }
  button.secondary { background: #fff; color: #1f6feb; }
  button:disabled { opacity: .5; cursor: default; }
  button:focus-visible, input:focus-visible { outline: 3px solid #fb8500; outline-offset: 1px; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
  th { background: #f6f8fa; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: .85em; word-break: break-all; }
  .phase { font-weight: 600; }
  .phase-Succeeded, .phase-NoOp, .phase-Planned { color: #116329; }
  .phase-Failed, .phase-Invalid, .phase-Cancelled, .phase-Denied { color: #a40e26; }
  .phase-Running, .phase-Queued, .phase-Pending { color: #7d4e00; }
  .reason { color: #a40e26; }
  #status { min-height: 1.4em; margin: .5rem 0; }
  .muted { color: #57606a; }
</style>
</head>
<body>
<h1>vuln-patcher</h1>
<form id="connect">
  <label>Kubernetes bearer token <input id="token" type="password" autocomplete="off" required></label>
  <label>Namespace <input id="namespace" value="default" required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?"></label>
  <button type="submit">Load</button>
</form>
<p id="status" role="status" aria-live="polite" class="muted">Paste a token (kubectl create token &lt;serviceaccount&gt; --audience vuln-patcher) and load a namespace.</p>

<h2 id="images-h">Images and their reports</h2>
<table aria-labelledby="images-h">
  <thead><tr><th scope="col">Report</th><th scope="col">Image</th><th scope="col">Platform</th>
  <th scope="col">Critical</th><th scope="col">High</th><th scope="col">Medium</th><th scope="col">Low</th><th scope="col">Unknown</th>
  <th scope="col">Fixable</th><th scope="col">PatchJob</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
  <tbody id="reports"><tr><td colspan="11" class="muted">Nothing loaded yet.</td></tr></tbody>
</table>

<h2 id="jobs-h">PatchJobs</h2>
<table aria-labelledby="jobs-h">
  <thead><tr><th scope="col">Name</th><th scope="col">Image</th><th scope="col">Phase</th><th scope="col">Attempts</th>
  <th scope="col">Fixable before</th><th scope="col">Fixed</th><th scope="col">Patched image</th><th scope="col">Reason</th></tr></thead>
  <tbody id="jobs"><tr><td colspan="8" class="muted">Nothing loaded yet.</td></tr></tbody>
</table>

<script src="/ui.js"></script>
</body>
</html>
`;

export const UI_JS = `"use strict";
const $ = (id) => document.getElementById(id);
const state = { token: "", ns: "", jobs: new Map(), reports: [], stream: null };

function say(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "reason" : "muted";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "title" || k === "type") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

async function api(path, init) {
  const res = await fetch(path, { ...init, headers: { ...(init && init.headers), authorization: "Bearer " + state.token, "content-type": "application/json" } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || (res.status + " " + res.statusText));
  return body;
}

function imageOf(i) {
  if (!i) return "";
  return i.registry + "/" + i.repository + (i.tag ? ":" + i.tag : "") + (i.digest ? "@" + i.digest.slice(0, 19) : "");
}

function renderReports() {
  const tb = $("reports");
  tb.replaceChildren();
  if (state.reports.length === 0) tb.append(el("tr", {}, el("td", { colSpan: 11, class: "muted" }, "No VulnerabilityReports in this namespace.")));
  for (const r of state.reports) {
    const v = r.vulnerabilities || { bySeverity: {} };
    const sev = (k) => el("td", { class: "num" }, (v.bySeverity && v.bySeverity[k]) || 0);
    const job = [...state.jobs.values()].filter((j) => j.spec.reportRef && j.spec.reportRef.name === r.name).sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)))[0];
    const patch = el("button", { type: "button", "data-action": "patch", "aria-label": "Patch " + r.name }, "Patch");
    const dry = el("button", { type: "button", class: "secondary", "data-action": "dry-run", "aria-label": "Dry run " + r.name }, "Dry run");
    patch.disabled = dry.disabled = !r.patchable;
    if (!r.patchable) patch.title = dry.title = r.problem || "nothing fixable";
    patch.onclick = () => start(r, false, patch);
    dry.onclick = () => start(r, true, dry);
    tb.append(el("tr", { "data-report": r.name },
      el("th", { scope: "row" }, r.name),
      el("td", {}, el("code", {}, imageOf(r.image))),
      el("td", {}, r.image ? r.image.platform : ""),
      sev("CRITICAL"), sev("HIGH"), sev("MEDIUM"), sev("LOW"), sev("UNKNOWN"),
      el("td", { class: "num" }, v.fixable == null ? "" : v.fixable),
      el("td", { class: "phase phase-" + (job ? job.status.phase || "Pending" : "") }, job ? (job.status.phase || "Pending") : (r.problem ? r.problem : "-")),
      el("td", {}, patch, " ", dry)));
  }
}

// Signed (status.signature) and what sbomscanner's scan of the patched image says (the Verified condition).
function proof(s) {
  const v = (s.conditions || []).find((c) => c.type === "Verified");
  const parts = [];
  if (s.signature) parts.push("signed");
  if (v) parts.push(v.status === "True" ? "verified by scan" : v.status === "False" ? "scan disagrees: " + ((s.verification && s.verification.disputed) || []).join(", ") : "awaiting scan");
  return parts.length ? el("span", { class: v && v.status === "False" ? "reason" : "muted", "data-field": "proof", title: v ? v.message : "" }, " " + parts.join(", ")) : "";
}

// The rollout of the patched image to the workloads (status.rollout): counts per state, each workload in the title.
function rollout(s) {
  const r = s.rollout;
  if (!r || !r.workloads || r.workloads.length === 0) return "";
  const n = {};
  for (const w of r.workloads) n[w.state] = (n[w.state] || 0) + 1;
  const order = ["Updated", "Updating", "Planned", "RollingBack", "RolledBack", "Skipped"];
  const words = { Updated: "updated", Updating: "updating", Planned: r.mode === "DryRun" ? "would update" : "planned", RollingBack: "rolling back", RolledBack: "rolled back", Skipped: "left alone" };
  const text = "rollout " + r.mode + ": " + order.filter((k) => n[k]).map((k) => n[k] + " " + words[k]).join(", ");
  const title = r.workloads.map((w) => w.kind + "/" + w.name + " (" + w.container + "): " + w.state + (w.reason ? " " + w.reason : "") + (w.message ? " - " + w.message : "")).join("\\n");
  return el("div", { class: n.RolledBack || n.RollingBack ? "reason" : "muted", "data-field": "rollout", title }, text);
}

// The language-library findings (status.libraries): counts per outcome, each CVE and why in the title.
function libraries(s) {
  const l = s.libraries;
  if (!l || l.length === 0) return "";
  const n = {};
  for (const f of l) n[f.reason] = (n[f.reason] || 0) + 1;
  const words = { Fixed: "fixed", Planned: "planned", NotFixed: "not fixed", NotPatchable: "not patchable", BeyondPatchLevel: "beyond the patch level", LibraryNotPatched: "not patched (OS only)", NoFixPublished: "no fix yet" };
  const text = "libraries: " + Object.keys(words).filter((k) => n[k]).map((k) => n[k] + " " + words[k]).join(", ");
  const title = l.map((f) => f.cve + " " + f.packageName + " " + f.installedVersion + (f.fixedVersion ? " -> " + f.fixedVersion : "") + ": " + f.reason + " - " + f.message).join("\\n");
  return el("div", { class: n.NotFixed || n.NotPatchable ? "reason" : "muted", "data-field": "libraries", title }, text);
}

function renderJobs() {
  const tb = $("jobs");
  tb.replaceChildren();
  const jobs = [...state.jobs.values()].sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)) || a.name.localeCompare(b.name));
  if (jobs.length === 0) tb.append(el("tr", {}, el("td", { colSpan: 8, class: "muted" }, "No PatchJobs yet.")));
  for (const j of jobs) {
    const s = j.status || {};
    const phase = s.phase || "Pending";
    const img = j.spec.image ? j.spec.image.registryURI + "/" + j.spec.image.repository + (j.spec.image.tag ? ":" + j.spec.image.tag : "") : "";
    const vul = s.vulnerabilities || {};
    const patched = s.patchedImage && s.patchedImage.digest ? s.patchedImage.reference + "@" + s.patchedImage.digest : "";
    const failed = phase === "Failed" || phase === "Invalid" || phase === "Cancelled" || phase === "Denied";
    const why = failed ? (s.reason ? s.reason + ": " : "") + (s.message || "") : phase === "Planned" ? (s.message || "") : (s.reason === "PolicyLimit" || s.reason === "OutsideWindow" ? s.message : "");
    tb.append(el("tr", { "data-patchjob": j.name },
      el("th", { scope: "row" }, j.name),
      el("td", {}, el("code", {}, img)),
      el("td", { class: "phase phase-" + phase, "data-field": "phase" }, phase),
      el("td", { class: "num" }, s.attempts || 0),
      el("td", { class: "num" }, vul.before && vul.before.fixable != null ? vul.before.fixable : ""),
      el("td", { class: "num" }, vul.after && vul.after.fixed != null ? vul.after.fixed : ""),
      el("td", {}, el("code", { "data-field": "patched" }, patched), proof(s), rollout(s), libraries(s)),
      el("td", { class: failed ? "reason" : "muted", "data-field": "reason" }, why)));
  }
  renderReports();
}

async function start(r, dryRun, button) {
  button.disabled = true;
  try {
    const pj = await api("/api/v1/namespaces/" + state.ns + "/patchjobs", { method: "POST", body: JSON.stringify({ report: r.name, dryRun }) });
    state.jobs.set(pj.name, pj);
    renderJobs();
    say((dryRun ? "Dry run" : "Patch") + " of " + r.name + " started: PatchJob " + pj.name);
  } catch (e) {
    say("Could not start: " + e.message, true);
  } finally {
    button.disabled = false;
  }
}

async function follow(ns) {
  if (state.stream) state.stream.abort();
  const ctl = new AbortController();
  state.stream = ctl;
  let fatal = false;
  try {
    const res = await fetch("/api/v1/namespaces/" + ns + "/events", { headers: { authorization: "Bearer " + state.token }, signal: ctl.signal });
    if (!res.ok) {
      fatal = res.status === 401 || res.status === 403;
      throw new Error((await res.json().catch(() => ({}))).error || res.statusText);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\\n\\n")) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame.split("\\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\\n");
        if (!data) continue;
        const ev = JSON.parse(data);
        if (frame.startsWith("event: end")) {
          // The server ended the stream: the token expired or its rights are gone.
          fatal = true;
          throw new Error(ev.reason === "TokenExpired" ? "the token expired; paste a new one" : "this token may no longer watch here");
        }
        if (ev.type === "DELETED") state.jobs.delete(ev.object.name);
        else state.jobs.set(ev.object.name, ev.object);
        renderJobs();
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    say("Live updates stopped: " + e.message + (fatal ? "" : " (retrying)"), true);
  }
  // Retry only the stream still wanted (not one replaced by loading another namespace),
  // and not a refusal; after a gap, list again so that nothing missed stays missed.
  if (fatal || ctl.signal.aborted || state.stream !== ctl) return;
  setTimeout(() => {
    if (state.stream === ctl && !ctl.signal.aborted) refresh(ns).then(() => follow(ns));
  }, 2000);
}

async function refresh(ns) {
  try {
    const jobs = await api("/api/v1/namespaces/" + ns + "/patchjobs");
    if (state.ns !== ns) return;
    state.jobs = new Map(jobs.items.map((j) => [j.name, j]));
    renderJobs();
  } catch (e) {
    say("Could not list PatchJobs: " + e.message, true);
  }
}

async function load() {
  state.token = $("token").value.trim();
  state.ns = $("namespace").value.trim();
  sessionStorage.setItem("vp-token", state.token);
  say("Loading " + state.ns + "...");
  try {
    const [reports, jobs] = await Promise.all([
      api("/api/v1/namespaces/" + state.ns + "/reports"),
      api("/api/v1/namespaces/" + state.ns + "/patchjobs"),
    ]);
    state.reports = reports.items;
    state.jobs = new Map(jobs.items.map((j) => [j.name, j]));
    renderJobs();
    say(state.reports.length + " reports and " + state.jobs.size + " PatchJobs in " + state.ns + "; following changes.");
    follow(state.ns);
  } catch (e) {
    say("Could not load " + state.ns + ": " + e.message, true);
  }
}

$("connect").addEventListener("submit", (e) => { e.preventDefault(); load(); });
const saved = sessionStorage.getItem("vp-token");
const params = new URLSearchParams(location.search);
if (params.get("namespace")) $("namespace").value = params.get("namespace");
if (saved) { $("token").value = saved; load(); }
`;
