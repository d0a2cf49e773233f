// vuln-patcher admission: the validating webhook that admits a Pod only when its images
// that match --images are signed with the given public key (src/server/admission.ts).
import { readFileSync } from "node:fs";
import { parse, flagOrEnv } from "./args.ts";
import { newLogger, parseListen, UsageError } from "../util/index.ts";
import { startAdmissionServer } from "../server/index.ts";
import { exitSoon, onShutdown } from "./shutdown.ts";

export const admissionUsage = `Usage: vuln-patcher admission --key cosign.pub --tls-cert FILE --tls-key FILE [flags]

A validating admission webhook (POST /validate, HTTPS): a Pod is admitted only when each
of its images matching --images is signed with --key (cosign verify, offline). Register it
with a ValidatingWebhookConfiguration for pods (docs/signing.md).

  --key FILE|URI          the public key ($COSIGN_PUBLIC_KEY)
  --images RE2[,RE2]      images that must be signed (default: tags ending in -patched)
  --tls-cert, --tls-key   the serving certificate the apiserver trusts (caBundle)
  --insecure-registry H   a registry reached over plain HTTP (repeatable)
  --listen HOST:PORT      default :8443
  --log-level LEVEL       default info`;

/** Tags ending in -patched, by tag or with a digest after it. */
export const DEFAULT_SIGNED_IMAGES = ".*:[^/]*-patched(@sha256:[a-f0-9]{64})?";

export async function admissionCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    key: { type: "string" },
    images: { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "insecure-registry": { type: "string", multiple: true },
    listen: { type: "string" },
    "log-level": { type: "string" },
  });
  if (v.help) {
    process.stdout.write(admissionUsage + "\n");
    return 0;
  }
  const key = flagOrEnv(v.key, process.env.COSIGN_PUBLIC_KEY);
  if (!key) throw new UsageError("--key (or $COSIGN_PUBLIC_KEY) is required");
  if (!v["tls-cert"] || !v["tls-key"])
    throw new UsageError("--tls-cert and --tls-key are required (webhooks are HTTPS)");
  const log = newLogger("admission", v["log-level"]);
  const shutdown = onShutdown(log);
  const { host, port } = parseListen(v.listen ?? ":8443");
  const server = await startAdmissionServer({
    key,
    images: (v.images ?? DEFAULT_SIGNED_IMAGES).split(",").filter(Boolean),
    insecureHosts: v["insecure-registry"] ?? [],
    cert: readFileSync(v["tls-cert"], "utf8"),
    tlsKey: readFileSync(v["tls-key"], "utf8"),
    host,
    port,
    log,
  });
  log.info({ port: server.port }, "admission webhook serving");
  await shutdown.requested;
  await server.close();
  exitSoon(0);
  return 0;
}
