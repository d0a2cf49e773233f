/** Go-style durations (5m, 1h30m, 250ms) to milliseconds; throws on anything else. */
export function parseDuration(s: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
    consumed = re.lastIndex;
  }
  if (!s || consumed !== s.length)
    throw new Error(`invalid duration ${JSON.stringify(s)} (examples: 30s, 5m, 1h30m)`);
  return total;
}
