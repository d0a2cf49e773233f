// The spec of an ad-hoc patch (POST .../patchjobs): of an image reference, or of a report
// in the caller's namespace (whose read the caller must be allowed too: the server
// reads it with its own rights).
import {
  type LibrarySettings,
  type PackageType,
  parseImageRef,
  type PatchJobSpec,
  type PatchLevel,
  REPORT_GROUP,
  REPORT_PLURAL,
  Source,
} from "../api/index.ts";
import { libraryPlanFor, patchJobNameForIndex, type ReportSummary, specFromReport } from "../decide/index.ts";
import type { Store } from "../kube/index.ts";

import { errorMessage } from "../util/index.ts";
import type { Access } from "./auth.ts";
import { HttpError } from "./respond.ts";

const PLATFORM_RE = /^(all|[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?)$/;

export async function adhocSpec(
  ns: string,
  b: Record<string, unknown>,
  reports: Store<ReportSummary>,
  authorize: (a: Access) => Promise<void>,
): Promise<PatchJobSpec> {
  const dryRun = b.dryRun === true;
  if (typeof b.report === "string") {
    await authorize({
      verb: "get",
      group: REPORT_GROUP,
      resource: REPORT_PLURAL,
      namespace: ns,
      name: b.report,
    });
    return reportSpec(ns, b.report, reports.get(`${ns}/${b.report}`), dryRun, librarySettings(b));
  }
  if (typeof b.image !== "string")
    throw new HttpError(
      400,
      'give "image" (a reference) or "report" (a VulnerabilityReport name in this namespace)',
    );
  // An image alone is patched with every OS update copa finds: library settings need a report.
  if (b.packageTypes !== undefined || b.libraryPatchLevel !== undefined)
    throw new HttpError(400, 'packageTypes and libraryPatchLevel go with "report" (it lists the libraries)');
  let ref;
  try {
    ref = parseImageRef(b.image);
  } catch (err) {
    throw new HttpError(400, `image: ${errorMessage(err)}`);
  }
  const platform = typeof b.platform === "string" ? b.platform : "linux/amd64";
  if (!PLATFORM_RE.test(platform))
    throw new HttpError(400, `platform: ${JSON.stringify(platform)} is not os/arch[/variant] or all`);
  return {
    image: {
      registryURI: ref.registry,
      repository: ref.repository,
      ...(ref.tag ? { tag: ref.tag } : {}),
      ...(ref.digest ? { digest: ref.digest } : {}),
      platform,
    },
    source: Source.Manual,
    ...(dryRun ? { dryRun: true } : {}),
  };
}

/** packageTypes and libraryPatchLevel of the request body, as a PatchPolicy has them. */
function librarySettings(b: Record<string, unknown>): LibrarySettings {
  const types = b.packageTypes ?? ["os"];
  if (!Array.isArray(types) || types.length === 0 || !types.every((t) => t === "os" || t === "library"))
    throw new HttpError(400, 'packageTypes: a list of "os" and "library"');
  const level = b.libraryPatchLevel ?? "patch";
  if (level !== "patch" && level !== "minor" && level !== "major")
    throw new HttpError(400, 'libraryPatchLevel: "patch", "minor" or "major"');
  return { packageTypes: types as PackageType[], patchLevel: level as PatchLevel };
}

function reportSpec(
  ns: string,
  name: string,
  s: ReportSummary | undefined,
  dryRun: boolean,
  libraries: LibrarySettings,
): PatchJobSpec {
  if (!s) throw new HttpError(404, `VulnerabilityReport ${ns}/${name} not found`);
  const im = s.facts?.imageMetadata;
  if (im?.indexDigest && !dryRun)
    throw new HttpError(
      422,
      `report ${name} is one platform (${im.platform}) of a multi-arch index: patching it alone would replace the patched tag with that platform only; patch the index instead: {"image": "${im.registryURI}/${im.repository}${im.tag ? `:${im.tag}` : ""}", "platform": "all"} (PatchJob ${patchJobNameForIndex(im)} patches it from its reports)`,
    );
  if (!s.facts || !s.facts.conversion.ok)
    throw new HttpError(
      422,
      `report ${name} cannot be patched: ${s.facts?.conversion.ok === false ? s.facts.conversion.message : s.invalid?.message}`,
    );
  const settings = { libraries };
  const libs = libraryPlanFor(s.facts, settings).updates;
  const os = libraries.packageTypes?.includes("os") ?? true;
  // Nothing to patch is said here: a spec without updates would mean "update everything".
  if ((os ? s.facts.conversion.value.updates.length : 0) + libs.length === 0)
    throw new HttpError(
      422,
      os
        ? `report ${name} lists nothing fixable: no OS package${libraries.packageTypes?.includes("library") ? " or library" : ""} with a fix newer than installed`
        : `report ${name} lists no Python or Node.js package with a fix to patch`,
    );
  const spec = specFromReport(s.facts, s.facts.conversion.value, settings, libs);
  return { ...spec, source: Source.Manual, ...(dryRun ? { dryRun: true } : {}) };
}
