// The admission webhook as the signing tests run it: `vuln-patcher admission`'s server
// in-process on 127.0.0.1 with a certificate made for it (the apiserver calls webhooks
// over TLS only), registered for Pods of one namespace; `close()` takes both away.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { AdmissionregistrationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { startAdmissionServer } from "../../src/server/index.ts";

const run = promisify(execFile);

export async function signedOnlyWebhook(
  kc: KubeConfig,
  o: { namespace: string; key: string; images: string[]; insecureHosts?: string[] },
): Promise<{ close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "vp-webhook-"));
  await run("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
    ...["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
    ...["-keyout", join(dir, "tls.key"), "-out", join(dir, "tls.crt")],
  ]);
  const cert = await readFile(join(dir, "tls.crt"), "utf8");
  const hook = await startAdmissionServer({
    key: o.key,
    images: o.images,
    insecureHosts: o.insecureHosts ?? [],
    cert,
    tlsKey: await readFile(join(dir, "tls.key"), "utf8"),
    host: "127.0.0.1",
    port: 0,
  });
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const name = `vp-signed-${o.namespace}`;
  await admission.createValidatingWebhookConfiguration({
    body: {
      metadata: { name },
      webhooks: [
        {
          name: "signed.vulnpatcher.io",
          clientConfig: {
            url: `https://127.0.0.1:${hook.port}/validate`,
            caBundle: Buffer.from(cert).toString("base64"),
          },
          rules: [{ operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"] }],
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": o.namespace } },
          failurePolicy: "Fail",
          sideEffects: "None",
          admissionReviewVersions: ["v1"],
          timeoutSeconds: 20,
        },
      ],
    },
  });
  return {
    async close() {
      await admission.deleteValidatingWebhookConfiguration({ name });
      await hook.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
