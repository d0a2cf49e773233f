// Five-field cron expressions (minute hour day-of-month month day-of-week) evaluated in
// an IANA time zone, by croner (a kept library: time zones and daylight-saving changes
// right; a hand-written version here assumed 24-hour days and missed runs across them).
// Day-of-month and day-of-week follow cron: when both are restricted, either matches. A
// time that a spring-forward change skips runs at the first valid time after it; one that
// a fall-back change repeats runs once.
import { Cron as Croner } from "croner";

export class CronError extends Error {
  override name = "CronError";
  readonly code = "INVALID_CRON";
}

/** A checked expression (the schedule's source and its parsed form). */
export interface Cron {
  source: string;
}

const OPTIONS = { paused: true, mode: "5-part", domAndDow: false } as const;

const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12 },
  { name: "day of week", min: 0, max: 7 },
] as const;

export function parseCron(expr: string): Cron {
  const parts = expr.trim().split(/\s+/);
  if (parts.length !== 5)
    throw new CronError(
      `expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`,
    );
  // Ranges checked here for a message that names the field and its range (croner's
  // counts some fields from 0); croner checks the rest of the syntax.
  parts.forEach((p, i) => {
    const f = FIELDS[i]!;
    for (const m of p.replace(/\/\d+/g, "").matchAll(/\d+/g)) {
      const v = Number(m[0]);
      if (v < f.min || v > f.max) throw new CronError(`${f.name}: ${v} is out of range ${f.min}-${f.max}`);
    }
  });
  try {
    new Croner(expr.trim(), OPTIONS).stop();
  } catch (err) {
    throw new CronError((err as Error).message.replace(/^CronPattern: /, ""));
  }
  return { source: expr.trim() };
}

/** Throws a RangeError for a zone the runtime does not know. */
export function checkTimeZone(tz: string): void {
  new Intl.DateTimeFormat("en-US", { timeZone: tz });
}

const DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
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

/** The first run strictly after `after`, in `tz`; undefined when there is none. */
export function nextRun(c: Cron, tz: string, after: Date): Date | undefined {
  const job = new Croner(c.source, { ...OPTIONS, timezone: tz });
  try {
    return job.nextRun(after) ?? undefined;
  } finally {
    job.stop();
  }
}
