// vuln-patcher verify IMAGE: the signature and the attestations of a patched image,
// checked with the public key and printed (what was fixed, from what, by whom).
import { parse, flagOrEnv } from "./args.ts";
import { OPENVEX_TYPE, PROVENANCE_TYPE, verifyImage } from "../patch/index.ts";
import { UsageError } from "../util/index.ts";

export const verifyUsage = `Usage: vuln-patcher verify IMAGE --key cosign.pub [flags]

Checks that IMAGE (a tag or a digest) is signed with the key, and that its OpenVEX and
patch provenance attestations are signed with it too; prints what they say. Exits 1 with
the reason when anything does not verify. Plain cosign does the same (docs/signing.md).

  --key FILE|URI             the public key (or KMS URI) ($COSIGN_PUBLIC_KEY)
  --insecure-registry HOST   a registry reached over plain HTTP (repeatable)
  --json                     print the verified predicates as JSON`;

interface Provenance {
  source?: { image?: string; digest?: string };
  patchJob?: { namespace?: string; name?: string; uid?: string };
  fixedCVEs?: string[];
  verified?: Array<{ name: string; from: string; to: string }>;
  builder?: { worker?: string; buildkit?: string; tools?: Record<string, string> };
  patchedAt?: string;
}

export async function verifyCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(
    argv,
    {
      key: { type: "string" },
      "insecure-registry": { type: "string", multiple: true },
      json: { type: "boolean" },
    },
    true,
  );
  if (v.help) {
    process.stdout.write(verifyUsage + "\n");
    return 0;
  }
  const image = positionals[0];
  if (!image || positionals.length > 1) throw new UsageError("verify takes one IMAGE");
  const key = flagOrEnv(v.key as string | undefined, process.env.COSIGN_PUBLIC_KEY);
  if (!key) throw new UsageError("--key (or $COSIGN_PUBLIC_KEY) is required: the public key to verify with");
  const r = await verifyImage(image, {
    key,
    types: [OPENVEX_TYPE, PROVENANCE_TYPE],
    insecureHosts: (v["insecure-registry"] as string[] | undefined) ?? [],
  });
  if (v.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + "\n");
    return 0;
  }
  const p = (r.attestations[PROVENANCE_TYPE] ?? {}) as Provenance;
  const vex = (r.attestations[OPENVEX_TYPE] ?? {}) as { statements?: Array<{ status?: string }> };
  const lines = [
    image,
    `  digest      ${r.digest}`,
    `  signature   verified with ${key}`,
    `  source      ${p.source?.image ?? "?"}@${p.source?.digest ?? "?"}`,
    `  patchjob    ${p.patchJob?.namespace}/${p.patchJob?.name} (uid ${p.patchJob?.uid})`,
    `  patched     ${p.verified?.map((u) => `${u.name} ${u.from} -> ${u.to}`).join(", ") || "nothing recorded"}`,
    `  fixed       ${p.fixedCVEs?.length ?? 0} CVEs: ${(p.fixedCVEs ?? []).join(" ")}`,
    `  openvex     ${vex.statements?.length ?? 0} statements (${vex.statements?.filter((s) => s.status === "fixed").length ?? 0} fixed)`,
    `  built by    ${p.builder?.worker ?? "?"}${p.builder?.tools?.copa ? `, copa ${p.builder.tools.copa}` : ""}${p.patchedAt ? ` at ${p.patchedAt}` : ""}`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}
