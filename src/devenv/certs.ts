// A small certificate authority for the environment, made with the openssl CLI (Node's
// crypto makes keys but not X.509 certificates). Every key is EC P-256, as envtest's.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

const run = promisify(execFile);

export interface CertPair {
  cert: string;
  key: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd });
}

async function genKey(path: string, cwd: string): Promise<void> {
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path], cwd);
}

/** A self-signed CA in `dir`, as `<name>.crt` / `<name>.key`. */
export async function makeCA(dir: string, name: string, subject: string): Promise<CertPair> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  await genKey(key, dir);
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      key,
      "-sha256",
      "-days",
      "30",
      "-subj",
      subject,
      "-out",
      cert,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ],
    dir,
  );
  return { cert, key };
}

export interface LeafOptions {
  /** CN, and O entries (Kubernetes groups). */
  commonName: string;
  organizations?: string[];
  /** serverAuth with these SANs ("DNS:x", "IP:1.2.3.4"); otherwise a client cert. */
  serverSANs?: string[];
  client?: boolean;
}

/** A leaf certificate signed by `ca`, as `<name>.crt` / `<name>.key` in `dir`. */
export async function makeLeaf(
  dir: string,
  ca: CertPair,
  name: string,
  opts: LeafOptions,
): Promise<CertPair> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await genKey(key, dir);
  const subject = `/CN=${opts.commonName}` + (opts.organizations ?? []).map((o) => `/O=${o}`).join("");
  await openssl(["req", "-new", "-key", key, "-subj", subject, "-out", csr], dir);
  const usages = [
    opts.serverSANs ? "serverAuth" : undefined,
    opts.client || !opts.serverSANs ? "clientAuth" : undefined,
  ]
    .filter(Boolean)
    .join(",");
  const lines = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${usages}`,
  ];
  if (opts.serverSANs) lines.push(`subjectAltName=${opts.serverSANs.join(",")}`);
  await writeFile(ext, lines.join("\n") + "\n");
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      // A random serial per certificate: leaves are signed in parallel, and a shared
      // ca.srl file (-CAcreateserial) is read and written by each openssl at once.
      "-set_serial",
      `0x${randomBytes(16).toString("hex")}`,
      "-sha256",
      "-days",
      "30",
      "-extfile",
      ext,
      "-out",
      cert,
    ],
    dir,
  );
  return { cert, key };
}
