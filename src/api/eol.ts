// End of life of the OS releases copa patches (issue 25). A release past its end gets no
// security updates: its suites leave the mirrors (Debian moves them to
// archive.debian.org, where deb.debian.org answers 404), so a patch cannot work and the
// only fix is a rebuild on a supported release. sbomscanner's reports do not say it
// (Trivy's EOSL flag is not carried), so this table does: the dates are the end of each
// release's security support (LTS included), as endoflife.date lists them.
import type { OSInfo } from "./os.ts";

interface Release {
  /** The version's first component(s), as a report writes it ("10", "3.18", "20.04"). */
  version: string;
  name: string;
  eol: string;
  /** What to move to. */
  successor: string;
}

const RELEASES: Record<string, Release[]> = {
  debian: [
    { version: "8", name: "jessie", eol: "2020-06-30", successor: "Debian 12 (bookworm) or 13 (trixie)" },
    { version: "9", name: "stretch", eol: "2022-06-30", successor: "Debian 12 (bookworm) or 13 (trixie)" },
    { version: "10", name: "buster", eol: "2024-06-30", successor: "Debian 12 (bookworm) or 13 (trixie)" },
    { version: "11", name: "bullseye", eol: "2026-08-31", successor: "Debian 12 (bookworm) or 13 (trixie)" },
  ],
  ubuntu: [
    { version: "16.04", name: "xenial", eol: "2021-04-30", successor: "Ubuntu 24.04 LTS" },
    { version: "18.04", name: "bionic", eol: "2023-05-31", successor: "Ubuntu 24.04 LTS" },
    { version: "20.04", name: "focal", eol: "2025-05-31", successor: "Ubuntu 24.04 LTS" },
  ],
  alpine: [
    { version: "3.15", name: "3.15", eol: "2023-11-01", successor: "a supported Alpine release" },
    { version: "3.16", name: "3.16", eol: "2024-05-23", successor: "a supported Alpine release" },
    { version: "3.17", name: "3.17", eol: "2024-11-22", successor: "a supported Alpine release" },
    { version: "3.18", name: "3.18", eol: "2025-05-09", successor: "a supported Alpine release" },
    { version: "3.19", name: "3.19", eol: "2025-11-01", successor: "a supported Alpine release" },
    { version: "3.20", name: "3.20", eol: "2026-04-01", successor: "a supported Alpine release" },
  ],
};

/** Alpine releases before 3.15 and Debian before 8: long gone, matched by their numbers. */
function older(type: string, version: string): boolean {
  const [major, minor] = version.split(".").map(Number) as [number, number | undefined];
  if (type === "debian") return major < 8;
  if (type === "alpine") return major < 3 || (major === 3 && (minor ?? 0) < 15);
  return false;
}

export interface EndOfLife {
  release: string;
  since: string;
  message: string;
}

/** The release's end of life when `now` is past it, else undefined (unknown releases are not called EOL). */
export function endOfLife(
  os: Pick<OSInfo, "type" | "version"> | undefined,
  now: Date,
): EndOfLife | undefined {
  if (!os) return undefined;
  const type = os.type.toLowerCase();
  const r = (RELEASES[type] ?? []).find(
    (x) => os.version === x.version || os.version.startsWith(`${x.version}.`),
  );
  const release = r ? `${type} ${r.version} (${r.name})` : `${type} ${os.version}`;
  const since = r?.eol ?? (older(type, os.version) ? "long ago" : undefined);
  if (!since || (r && Date.parse(`${r.eol}T23:59:59Z`) >= now.getTime())) return undefined;
  const successor = r?.successor ?? "a supported release";
  return {
    release,
    since,
    message: `${release} is past its end of life (${since}): it gets no security updates and its package suites are gone from the mirrors, so it cannot be patched in place. Rebuild the image on ${successor}.`,
  };
}

/** apt's words when a release's suites are gone (deb.debian.org answers 404 for them): the suite, if so. */
export function goneSuite(output: string): string | undefined {
  const m =
    /The repository '([^']+?) Release' does not have a Release file/.exec(output) ??
    /Err:\d+ (\S+ \S+) Release\s+404\s+Not Found/.exec(output);
  return m?.[1];
}
