// What a copa run means. copa exits 0 or 1 and neither says whether anything changed
// (see docs/copa.md), so: classify the text loosely here, and let the registry have
// the last word (the worker verifies the destination tag).
import { goneSuite, Reason } from "../api/index.ts";

export interface CopaRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  /** The last lines of copa's output (stderr and stdout), for the status message. */
  outputTail: string;
  timedOut: boolean;
  /** copa's OpenVEX document, when it wrote one. */
  vex?: string;
}

export type CopaVerdict =
  | { kind: "patched"; pushedRef?: string }
  | { kind: "noop"; message: string }
  | { kind: "failed"; reason: Reason; message: string; transient: boolean };

const NOOP_PATTERNS = [
  /already up-to-date/i,
  /no patch was applied/i,
  /no package updates found/i,
  /no upgradable packages/i,
];

const FAILURES: Array<{ re: RegExp; reason: Reason; transient: boolean; hint: string }> = [
  {
    // A registry (the push target, a source layer) unreachable during the build: the
    // same dial errors as BuildKit's, but about a registry URL, so checked first.
    re: /(failed to (push|do request|resolve|fetch|copy)|https?:\/\/[^\s"]*\/v2\/)[^\n]{0,400}(connection refused|dial tcp|no such host|i\/o timeout|connection reset)/i,
    reason: Reason.RegistryUnreachable,
    transient: true,
    hint: "a registry is unreachable",
  },
  {
    // "Unavailable: error reading from server: EOF": gRPC's word for a BuildKit that died mid-solve.
    re: /(connection refused|no such file or directory|failed to dial|connection error|transport: error while dialing|unavailable desc|unavailable: error reading from server).{0,200}/i,
    reason: Reason.BuildKitUnreachable,
    transient: true,
    hint: "BuildKit is unreachable",
  },
  {
    re: /(401 unauthorized|403 forbidden|unauthorized:|denied:|authentication required|insufficient_scope)/i,
    reason: Reason.RegistryDenied,
    transient: false,
    hint: "the registry denied access (check the registry credentials secret)",
  },
  {
    re: /(manifest unknown|not found: not found|name unknown|failed to resolve source metadata.*not found)/i,
    reason: Reason.ImageNotFound,
    transient: false,
    hint: "the source image was not found",
  },
  {
    re: /(no such host|i\/o timeout|tls handshake timeout|connection reset by peer|dial tcp)/i,
    reason: Reason.RegistryUnreachable,
    transient: true,
    hint: "a registry is unreachable",
  },
  {
    re: /(unsupported (os|distro|image)|not supported|could not determine os|unable to detect os)/i,
    reason: Reason.UnsupportedOS,
    transient: false,
    hint: "copa does not support this image's OS",
  },
  {
    // copa installs the newest version it can get, then checks it against the fix:
    // "downloaded package liblzma5 version 5.4.1-1+deb12u2 lower than required 5.4.1-1+deb12u99".
    re: /downloaded package \S+ version \S+ lower than required \S+/i,
    reason: Reason.PackageError,
    transient: false,
    hint: "the package archive has no version with the fix yet",
  },
  {
    // apt's own error lines first ("E: Version '...' for '...' was not found"): they say
    // what failed. Case-sensitive, so "failed to solve: " is not taken for one.
    re: /(^|\s)E: .+/m,
    reason: Reason.PackageError,
    transient: false,
    hint: "a package update failed",
  },
  {
    re: /(unable to locate package|dpkg: error|apk: |errors were encountered|failed to install|package .* not found|has no installation candidate|version '[^']*' for '[^']*' was not found)/i,
    reason: Reason.PackageError,
    transient: false,
    hint: "a package update failed",
  },
  {
    re: /(context deadline exceeded|timed out)/i,
    reason: Reason.Timeout,
    transient: true,
    hint: "copa timed out",
  },
];

/** The output line copa prints on success: "Patched image (linux/amd64): <ref>". */
const PATCHED_RE = /Patched image(?: \([^)]*\))?:\s*(\S+)/;

export function classifyCopaRun(run: CopaRun, timeoutDesc = "the time limit"): CopaVerdict {
  const text = run.outputTail;
  if (run.timedOut)
    return {
      kind: "failed",
      reason: Reason.Timeout,
      message: `copa did not finish within ${timeoutDesc}`,
      transient: true,
    };
  if (run.exitCode === 0) {
    const m = PATCHED_RE.exec(text);
    if (m) return { kind: "patched", pushedRef: m[1] };
    if (NOOP_PATTERNS.some((re) => re.test(text)))
      return { kind: "noop", message: "copa found nothing to update" };
    // Exit 0 with neither line: let the registry decide (the worker verifies the tag).
    return { kind: "patched" };
  }
  // update-all mode on an image with nothing to upgrade exits 1 (seen with v0.14.2).
  if (NOOP_PATTERNS.some((re) => re.test(text)))
    return { kind: "noop", message: "copa found no package updates" };
  // copa's own warnings are not why it failed: its docker-socket fallback ("failed to
  // connect to the docker API ... no such file or directory") would read as BuildKit down.
  const errors = text
    .split("\n")
    .filter((l) => !/level=(warning|info|debug|trace)\b/.test(l))
    .join("\n");
  // A release whose suites are gone from the mirror: no retry, no package will come.
  const gone = goneSuite(errors);
  if (gone)
    return {
      kind: "failed",
      reason: Reason.EndOfLife,
      message: clip(
        `the image's OS release is past its end of life: the mirror no longer serves '${gone}' (apt: no Release file, 404), so nothing can be patched in place. Rebuild the image on a supported release (e.g. Debian 12 bookworm).`,
      ),
      transient: false,
    };
  for (const f of FAILURES) {
    const m = f.re.exec(errors);
    if (m)
      return {
        kind: "failed",
        reason: f.reason,
        message: `${f.hint}: ${lineAround(errors, m.index + (m[0].length - m[0].trimStart().length))}`,
        transient: f.transient,
      };
  }
  const why = run.signal ? `killed by ${run.signal}` : `exit code ${run.exitCode}`;
  return {
    kind: "failed",
    reason: Reason.CopaFailed,
    message: `copa failed (${why}): ${lastErrorLine(errors || text)}`,
    transient: false,
  };
}

function lineAround(text: string, index: number): string {
  const start = text.lastIndexOf("\n", index) + 1;
  const end = text.indexOf("\n", index);
  return clip(text.slice(start, end < 0 ? undefined : end).trim());
}

/** The last line that looks like an error, or the last line. */
export function lastErrorLine(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const err = [...lines].reverse().find((l) => /error|fail|fatal/i.test(l));
  return clip(err ?? lines.at(-1) ?? "(no output)");
}

function clip(s: string, max = 400): string {
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}
