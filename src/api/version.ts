// Package version comparison for the three families copa patches: dpkg (Debian,
// Ubuntu), apk (Alpine) and rpm (the RPM distributions). Each follows the package
// manager's own algorithm, because "which fixed version is highest" and "is the
// installed version already fixed" must agree with what apt, apk or dnf will do.

export const VersionScheme = { Dpkg: "dpkg", Apk: "apk", Rpm: "rpm" } as const;
export type VersionScheme = (typeof VersionScheme)[keyof typeof VersionScheme];

/** Negative, zero or positive, like a sort comparator. */
export function compareVersions(scheme: VersionScheme, a: string, b: string): number {
  switch (scheme) {
    case "dpkg":
      return compareDpkg(a, b);
    case "apk":
      return compareApk(a, b);
    case "rpm":
      return compareRpm(a, b);
  }
}

/** A version string the scheme can parse (checked before it reaches copa, which rejects bad ones). */
export function isValidVersion(scheme: VersionScheme, v: string): boolean {
  if (!v || /\s/.test(v)) return false;
  switch (scheme) {
    case "dpkg":
      return /^(\d+:)?[0-9][A-Za-z0-9.+~:-]*$/.test(v) && !/^(\d+:)?.*-$/.test(v);
    case "apk":
      return /^[0-9]/.test(v);
    case "rpm":
      return /^(\d+:)?[A-Za-z0-9._+~^-]+$/.test(v);
  }
}

// ---- dpkg (deb-version(7)) ----

/** `[epoch:]version[-release]`, the shape dpkg and rpm versions share (the last dash splits). */
function splitEVR(v: string): { epoch: number; version: string; release: string } {
  let epoch = 0;
  let rest = v;
  const colon = v.indexOf(":");
  if (colon > 0 && /^\d+$/.test(v.slice(0, colon))) {
    epoch = Number(v.slice(0, colon));
    rest = v.slice(colon + 1);
  }
  const dash = rest.lastIndexOf("-");
  return dash >= 0
    ? { epoch, version: rest.slice(0, dash), release: rest.slice(dash + 1) }
    : { epoch, version: rest, release: "" };
}

function splitDpkg(v: string): { epoch: number; upstream: string; revision: string } {
  const { epoch, version, release } = splitEVR(v);
  return { epoch, upstream: version, revision: release };
}

/** dpkg's character order: '~' before everything, even the end; letters before other characters. */
function dpkgOrder(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[0-9]/.test(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ac = dpkgOrder(a[i]);
      const bc = dpkgOrder(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === "0") i++;
    while (b[j] === "0") j++;
    while (isDigit(a[i]) && isDigit(b[j])) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a[i])) return 1;
    if (isDigit(b[j])) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

export function compareDpkg(a: string, b: string): number {
  const x = splitDpkg(a);
  const y = splitDpkg(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  return verrevcmp(x.upstream, y.upstream) || verrevcmp(x.revision, y.revision);
}

// ---- apk (apk-tools version.c, simplified to its token order) ----

const APK_PRE = ["alpha", "beta", "pre", "rc"];
const APK_POST = ["cvs", "svn", "git", "hg", "p"];

type ApkToken = { kind: number; num?: bigint; str?: string };
// Token kinds, ordered so that a larger kind at the same position is a later version
// where apk says so: a pre-release suffix sorts before the end, a post suffix after.
const K_PRE = 0;
const K_END = 1;
const K_REV = 2;
const K_POST = 3;
const K_LETTER = 4;
const K_DIGIT = 5;

function apkTokens(v: string): ApkToken[] {
  const out: ApkToken[] = [];
  let s = v;
  let rev: bigint | undefined;
  const r = /-r(\d+)$/.exec(s);
  if (r) {
    rev = BigInt(r[1]!);
    s = s.slice(0, r.index);
  }
  const re = /(\d+)|([a-z])(?![a-z])|_([a-z]+)(\d*)|\./gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) {
    if (m[1] !== undefined) out.push({ kind: K_DIGIT, num: BigInt(m[1]) });
    else if (m[2] !== undefined) out.push({ kind: K_LETTER, str: m[2] });
    else if (m[3] !== undefined) {
      const pre = APK_PRE.indexOf(m[3]);
      const post = APK_POST.indexOf(m[3]);
      if (pre >= 0) out.push({ kind: K_PRE, num: BigInt(pre) * 1_000_000_000n + BigInt(m[4] || "0") });
      else out.push({ kind: K_POST, num: BigInt(Math.max(post, 0)) * 1_000_000_000n + BigInt(m[4] || "0") });
    }
    if (re.lastIndex >= s.length) break;
  }
  if (rev !== undefined) out.push({ kind: K_REV, num: rev });
  return out;
}

export function compareApk(a: string, b: string): number {
  const x = apkTokens(a);
  const y = apkTokens(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i] ?? { kind: K_END };
    const q = y[i] ?? { kind: K_END };
    if (p.kind !== q.kind) return p.kind - q.kind;
    if (p.num !== undefined && q.num !== undefined && p.num !== q.num) return p.num < q.num ? -1 : 1;
    if (p.str !== undefined && q.str !== undefined && p.str !== q.str) return p.str < q.str ? -1 : 1;
  }
  return 0;
}

// ---- rpm (rpmvercmp) ----

function rpmvercmp(a: string, b: string): number {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while (i < a.length && !/[A-Za-z0-9~^]/.test(a[i]!)) i++;
    while (j < b.length && !/[A-Za-z0-9~^]/.test(b[j]!)) j++;
    if (a[i] === "~" || b[j] === "~") {
      if (a[i] !== "~") return 1;
      if (b[j] !== "~") return -1;
      i++;
      j++;
      continue;
    }
    if (a[i] === "^" || b[j] === "^") {
      if (i >= a.length) return -1;
      if (j >= b.length) return 1;
      if (a[i] !== "^") return 1;
      if (b[j] !== "^") return -1;
      i++;
      j++;
      continue;
    }
    if (i >= a.length || j >= b.length) break;
    const numeric = isDigit(a[i]);
    const take = (s: string, k: number): string => {
      let e = k;
      while (e < s.length && (numeric ? isDigit(s[e]) : /[A-Za-z]/.test(s[e]!))) e++;
      return s.slice(k, e);
    };
    const sa = take(a, i);
    const sb = take(b, j);
    i += sa.length;
    j += sb.length;
    if (sb.length === 0) return numeric ? 1 : -1;
    if (numeric) {
      const na = sa.replace(/^0+/, "");
      const nb = sb.replace(/^0+/, "");
      if (na.length !== nb.length) return na.length - nb.length;
      if (na !== nb) return na < nb ? -1 : 1;
    } else if (sa !== sb) {
      return sa < sb ? -1 : 1;
    }
  }
  if (i >= a.length && j >= b.length) return 0;
  return i >= a.length ? -1 : 1;
}

export function compareRpm(a: string, b: string): number {
  const x = splitEVR(a);
  const y = splitEVR(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  const v = rpmvercmp(x.version, y.version);
  if (v) return v;
  if (!x.release || !y.release) return 0;
  return rpmvercmp(x.release, y.release);
}
