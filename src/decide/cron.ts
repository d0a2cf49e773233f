// Five-field cron expressions (minute hour day-of-month month day-of-week) evaluated in
// an IANA time zone, pure. Enough of cron for patch schedules: numbers, `*`, ranges,
// steps, lists, and month and weekday names; no seconds, no `@yearly`, no `L`/`W`/`#`.
// Day-of-month and day-of-week follow cron: when both are restricted, either matches.

export interface Cron {
  minute: Set<number>;
  hour: Set<number>;
  dom: Set<number>;
  month: Set<number>;
  dow: Set<number>;
  domStar: boolean;
  dowStar: boolean;
  source: string;
}

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, base: 1 },
  { name: "day of week", min: 0, max: 7, names: DAYS, base: 0 },
] as const;

export class CronError extends Error {}

function value(s: string, f: (typeof FIELDS)[number]): number {
  const names = "names" in f ? f.names : undefined;
  const i = names?.indexOf(s.toUpperCase()) ?? -1;
  if (i >= 0 && "base" in f) return i + f.base;
  if (!/^\d{1,2}$/.test(s)) throw new CronError(`${f.name}: ${JSON.stringify(s)} is not a number`);
  const n = Number(s);
  if (n < f.min || n > f.max) throw new CronError(`${f.name}: ${n} is out of range ${f.min}-${f.max}`);
  return n;
}

function field(text: string, f: (typeof FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const [range, stepText] = part.split("/") as [string, string | undefined];
    const step = stepText === undefined ? 1 : Number(stepText);
    if (stepText !== undefined && (!/^\d{1,2}$/.test(stepText) || step < 1))
      throw new CronError(`${f.name}: bad step ${JSON.stringify(stepText)}`);
    let lo: number;
    let hi: number;
    if (range === "*") [lo, hi] = [f.min, f.max];
    else if (range.includes("-")) {
      const [a, b] = range.split("-") as [string, string];
      [lo, hi] = [value(a, f), value(b, f)];
      if (lo > hi) throw new CronError(`${f.name}: range ${range} runs backwards`);
    } else {
      lo = value(range, f);
      hi = stepText === undefined ? lo : f.max;
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

export function parseCron(expr: string): Cron {
  const parts = expr.trim().split(/\s+/);
  if (parts.length !== 5)
    throw new CronError(
      `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`,
    );
  const [minute, hour, dom, month, dow] = parts.map((p, i) => field(p, FIELDS[i]!)) as [
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
  ];
  if (dow.has(7)) dow.add(0); // 7 is Sunday too
  return {
    minute,
    hour,
    dom,
    month,
    dow,
    domStar: parts[2] === "*",
    dowStar: parts[4] === "*",
    source: expr,
  };
}

/** Throws a RangeError for a zone the runtime does not know. */
export function checkTimeZone(tz: string): void {
  new Intl.DateTimeFormat("en-US", { timeZone: tz });
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Wall-clock fields of an instant in a time zone. */
export function wallClock(
  t: Date,
  tz: string,
): { year: number; month: number; day: number; hour: number; minute: number; dow: number } {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      weekday: "short",
    });
    formatters.set(tz, f);
  }
  const p = Object.fromEntries(f.formatToParts(t).map((x) => [x.type, x.value]));
  return {
    year: Number(p.year),
    month: Number(p.month),
    day: Number(p.day),
    hour: Number(p.hour),
    minute: Number(p.minute),
    dow: DAYS.indexOf(String(p.weekday).toUpperCase().slice(0, 3)),
  };
}

function dayMatches(c: Cron, w: ReturnType<typeof wallClock>): boolean {
  const dom = c.dom.has(w.day);
  const dow = c.dow.has(w.dow);
  if (c.domStar || c.dowStar) return (c.domStar || dom) && (c.dowStar || dow);
  return dom || dow;
}

/** The first minute strictly after `after` that matches, within about a year (else undefined). */
export function nextRun(c: Cron, tz: string, after: Date): Date | undefined {
  let t = Math.floor(after.getTime() / 60_000) * 60_000 + 60_000;
  const limit = t + 366 * 24 * 60 * 60_000;
  while (t < limit) {
    const w = wallClock(new Date(t), tz);
    if (!c.month.has(w.month) || !dayMatches(c, w)) {
      // Skip to the next wall-clock day (DST days are 23 or 25 hours: step by hours).
      t += ((23 - w.hour) * 60 + (60 - w.minute)) * 60_000;
      continue;
    }
    if (!c.hour.has(w.hour)) {
      t += (60 - w.minute) * 60_000;
      continue;
    }
    if (!c.minute.has(w.minute)) {
      t += 60_000;
      continue;
    }
    return new Date(t);
  }
  return undefined;
}
