// The PatchJob's status.libraries after an attempt, pure: each finding the controller
// listed as Planned says what became of it (Fixed, NotFixed, NotPatchable), with why.
import {
  type LibraryFinding,
  LibraryReason,
  type LibraryUpdate,
  MAX_LIBRARY_FINDINGS,
} from "../api/index.ts";
import type { LibraryOutcome } from "./patch-image.ts";

const keyOf = (type: string, name: string, path?: string) => `${type}\u0000${name}\u0000${path ?? ""}`;

/** The findings with the outcome of the patch; a finding of an update the status did not list is added. */
export function librariesAfter(findings: LibraryFinding[] | undefined, o: LibraryOutcome): LibraryFinding[] {
  const verdict = new Map<string, { u: LibraryUpdate; reason: LibraryReason; message: string }>();
  const put = (u: LibraryUpdate, reason: LibraryReason, message: string) =>
    verdict.set(keyOf(u.type, u.name, u.path), { u, reason, message });
  for (const u of o.fixed)
    put(u, LibraryReason.Fixed, `the patched image holds ${u.name} ${u.version} (fix ${u.fixedVersion})`);
  for (const u of o.satisfied)
    put(u, LibraryReason.Fixed, `the source image already holds ${u.name} at or above ${u.fixedVersion}`);
  for (const u of o.notFixed)
    put(
      u,
      LibraryReason.NotFixed,
      `copa ran, but the patched image holds ${u.name} ${u.version ?? "nowhere"}, below the fix ${u.fixedVersion}`,
    );
  for (const u of o.notPatchable)
    put(
      u,
      LibraryReason.NotPatchable,
      `copa could not update it: ${o.notPatchableReason ?? "no reason given"}`,
    );
  for (const u of o.absent)
    put(u, LibraryReason.NotPatchable, `${u.name} is not in the image${u.path ? ` at ${u.path}` : ""}`);
  const out: LibraryFinding[] = [];
  const done = new Set<string>();
  for (const f of findings ?? []) {
    const v = verdict.get(keyOf(f.type, f.packageName, f.path));
    const mine = v && (v.u.vulnerabilityIDs ?? []).includes(f.cve);
    if (mine) done.add(`${keyOf(f.type, f.packageName, f.path)}\u0000${f.cve}`);
    out.push(mine ? { ...f, fixedVersion: v.u.fixedVersion, reason: v.reason, message: v.message } : f);
  }
  for (const [k, v] of verdict)
    for (const cve of v.u.vulnerabilityIDs ?? [])
      if (!done.has(`${k}\u0000${cve}`))
        out.push({
          cve,
          type: v.u.type,
          packageName: v.u.name,
          installedVersion: v.u.installedVersion,
          fixedVersion: v.u.fixedVersion,
          ...(v.u.path ? { path: v.u.path } : {}),
          reason: v.reason,
          message: v.message,
        });
  return out.slice(0, MAX_LIBRARY_FINDINGS);
}

/** A failed patch: what was Planned was not fixed, and says why. */
export function librariesFailed(
  findings: LibraryFinding[] | undefined,
  why: string,
): LibraryFinding[] | undefined {
  if (!findings?.some((f) => f.reason === LibraryReason.Planned)) return findings;
  return findings.map((f) =>
    f.reason === LibraryReason.Planned
      ? { ...f, reason: LibraryReason.NotFixed, message: `the patch failed: ${why}`.slice(0, 1024) }
      : f,
  );
}
