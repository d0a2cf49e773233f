// Following the demo's PatchJob through the pipeline, a line per step, and the table of
// every finding against the patched image's packages.
import { compareDpkg, parseImageRef, type PatchJob } from "../api/index.ts";
import type { PatchJobClient } from "../kube/index.ts";
import { readPackageDB, type RegistryClient } from "../registry/index.ts";
import { renderTable } from "./patch-summary.ts";

export interface Finding {
  packageName: string;
  cve: string;
  installedVersion: string;
  fixedVersions: string[];
}

/** Poll the PatchJob until it ends (or `signal`, or the deadline), printing each step once. */
export async function followPatchJob(
  client: PatchJobClient,
  ns: string,
  name: string,
  o: { signal: AbortSignal; deadlineMs: number; step: (key: string, text: string) => void },
): Promise<PatchJob | undefined> {
  const { step } = o;
  let pj: PatchJob | undefined;
  let lastPhase = "";
  const deadline = Date.now() + o.deadlineMs;
  step("report", "report seen by the controller");
  while (!o.signal.aborted && Date.now() < deadline) {
    pj = await client.get(ns, name);
    const phase = pj?.status?.phase ?? "";
    if (pj) step("pj", `PatchJob ${ns}/${pj.metadata.name} created (generation ${pj.metadata.generation})`);
    if (phase && phase !== lastPhase) {
      lastPhase = phase;
      const worker = `patching: copa on BuildKit (worker ${pj!.status?.worker})`;
      if (phase === "Queued") step("queued", "PatchJob queued on NATS JetStream");
      if (phase === "Running" || phase === "Succeeded")
        step("queued", `PatchJob queued on NATS JetStream (at ${pj!.status?.queuedTime ?? "?"})`);
      if (phase === "Running") step("running", worker);
      if (phase === "Succeeded") {
        step("running", worker);
        step("pushed", `pushed ${pj!.status?.patchedImage?.reference}`);
        step(
          "verified",
          `verified: the tag holds ${pj!.status?.patchedImage?.digest}, packages read back from its layers`,
        );
      }
    }
    if (phase === "Succeeded" || phase === "NoOp" || phase === "Failed") break;
    await new Promise((r) => setTimeout(r, 300));
  }
  return pj;
}

/** Every finding of the report, against the patched image's packages: the rows and how many are fixed. */
export async function findingsTable(
  registry: RegistryClient,
  patchedReference: string,
  findings: Finding[],
): Promise<{ table: string; fixed: number }> {
  const patchedRef = parseImageRef(patchedReference);
  const patched = await registry.manifestFor(patchedRef);
  const after = await readPackageDB(registry, patchedRef, patched!.manifest.layers);
  const rows = [["PACKAGE", "CVE", "INSTALLED", "FIXED IN", "NOW", "STATUS"]];
  let fixed = 0;
  for (const x of findings) {
    const now = after.packages.get(x.packageName) ?? "-";
    const ok = now !== "-" && compareDpkg(now, x.fixedVersions[0]!) >= 0;
    if (ok) fixed++;
    rows.push([
      x.packageName,
      x.cve,
      x.installedVersion,
      x.fixedVersions[0]!,
      now,
      ok ? "fixed" : "remaining",
    ]);
  }
  return { table: renderTable(rows).trimEnd(), fixed };
}
