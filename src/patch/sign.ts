// Signing with Sigstore's cosign: the patched digest signed with a key pair the operator
// gives (a file, or any KMS URI cosign accepts), and what the patch knows attached as
// signed in-toto attestations. Offline by default: no transparency log, no Fulcio, no TUF
// (cosign 3.1's --use-signing-config=false with --tlog-upload=false). The signature and
// attestations go to the image's own repository (OCI referrers where the registry serves
// them, cosign's tag scheme otherwise). cosign runs from an argv array; the key's
// password reaches it in its environment, never on a command line or in a log.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatImageRef, type ImageRef, PatchError, Reason } from "../api/index.ts";

import { plainHTTP } from "../registry/index.ts";
import { findTool } from "../util/index.ts";

/** The predicate type of our patch provenance statement (docs/signing.md). */
export const PROVENANCE_TYPE = "https://vulnpatcher.io/attestations/patch-provenance/v1";
/** cosign's name for the OpenVEX predicate type (https://openvex.dev/ns). */
export const OPENVEX_TYPE = "openvex";
/** @default 120_000 */
export const DEFAULT_COSIGN_TIMEOUT_MS = 120_000;

export interface SignerOptions {
  /** A private key file, or a KMS URI (awskms://, gcpkms://, hashivault://, k8s://...). */
  key: string;
  /** The key file's password (COSIGN_PASSWORD). */
  password?: string;
  /** @default cosign on PATH, else the one setup built */
  cosignPath?: string;
  /** Registries reached over plain HTTP besides loopback ones. */
  insecureHosts?: string[];
  /** Upload to the public transparency log (needs the internet). @default false */
  tlogUpload?: boolean;
  /** @default DEFAULT_COSIGN_TIMEOUT_MS */
  timeoutMs?: number;
}

export interface Attestation {
  /** cosign's --type: "openvex", or a predicate type URI. */
  type: string;
  predicate: unknown;
}

/** What signing did, for the PatchJob's status. */
export interface SignatureInfo {
  /** The digest signed (the patched image's, or the index's). */
  digest: string;
  attestations: string[];
  /** How long signing and attesting took. */
  ms: number;
}

export interface SignContext {
  /** The attempt's registry credentials (dockerconfigjson text); none: cosign gets no credentials at all. */
  dockerConfig?: string;
  signal?: AbortSignal;
}

interface CosignRun {
  code: number;
  output: string;
}

export class CosignSigner {
  readonly #o: SignerOptions & { cosignPath: string };

  /** Throws MissingToolError (saying what to run) when there is no cosign. */
  constructor(o: SignerOptions) {
    this.#o = { ...o, cosignPath: findTool("cosign", o.cosignPath) };
  }

  /** Sign `image` (by digest) and attach each attestation, signed with the same key. */
  async signAndAttest(
    image: ImageRef,
    attestations: Attestation[],
    ctx: SignContext = {},
  ): Promise<SignatureInfo> {
    if (!image.digest) throw new PatchError(Reason.SigningFailed, "only a digest is signed, never a tag");
    if (!this.#o.key.includes("://") && !existsSync(this.#o.key))
      throw new PatchError(Reason.SigningKeyMissing, `the signing key ${this.#o.key} does not exist`);
    const ref = formatImageRef({
      registry: image.registry,
      repository: image.repository,
      digest: image.digest,
    });
    const t = performance.now();
    const dir = await mkdtemp(join(tmpdir(), "vuln-patcher-cosign-"));
    try {
      const env = await this.#env(dir, ctx);
      await this.#run(["sign", ...this.#common(image), "--yes", ref], env, ctx.signal, "signing");
      for (const [i, a] of attestations.entries()) {
        const file = join(dir, `predicate-${i}.json`);
        await writeFile(file, JSON.stringify(a.predicate));
        await this.#run(
          ["attest", ...this.#common(image), "--yes", "--type", a.type, "--predicate", file, ref],
          env,
          ctx.signal,
          `attesting ${a.type}`,
        );
      }
      return {
        digest: image.digest,
        attestations: attestations.map((a) => a.type),
        ms: performance.now() - t,
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Already signed with this key, its attestations of these types in place (an adopted
   * image a patch of ours published): nothing to add. False when anything does not verify.
   */
  async signedAlready(image: ImageRef, types: string[], ctx: SignContext = {}): Promise<boolean> {
    if (!image.digest) return false;
    const key = await this.#publicKey().catch(() => undefined);
    if (!key) return false;
    const ref = formatImageRef({
      registry: image.registry,
      repository: image.repository,
      digest: image.digest,
    });
    return verifyImage(ref, {
      key,
      types,
      cosignPath: this.#o.cosignPath,
      insecureHosts: this.#o.insecureHosts ?? [],
      ...(ctx.dockerConfig !== undefined ? { dockerConfig: ctx.dockerConfig } : {}),
    }).then(
      () => true,
      () => false,
    );
  }

  #pub?: Promise<string>;

  /** The public key: a KMS URI serves both; a key file's is derived once (`cosign public-key`). */
  #publicKey(): Promise<string> {
    if (this.#o.key.includes("://")) return Promise.resolve(this.#o.key);
    this.#pub ??= (async () => {
      const dir = await mkdtemp(join(tmpdir(), "vuln-patcher-pubkey-"));
      const file = join(dir, "cosign.pub");
      await this.#run(
        ["public-key", "--key", this.#o.key, "--outfile", file],
        { PATH: process.env.PATH, HOME: dir, COSIGN_PASSWORD: this.#o.password ?? "" },
        undefined,
        "deriving the public key",
      );
      return file;
    })();
    return this.#pub;
  }

  #common(image: ImageRef): string[] {
    const plain = plainHTTP(image.registry, this.#o.insecureHosts);
    return [
      "--key",
      this.#o.key,
      ...(this.#o.tlogUpload ? [] : ["--tlog-upload=false", "--use-signing-config=false"]),
      ...(plain ? ["--allow-http-registry", "--allow-insecure-registry"] : []),
    ];
  }

  /** Only what cosign needs: the password, and this attempt's credentials (or none). */
  async #env(dir: string, ctx: SignContext): Promise<NodeJS.ProcessEnv> {
    const docker = join(dir, "docker");
    await mkdir(docker, { mode: 0o700 });
    await writeFile(join(docker, "config.json"), ctx.dockerConfig ?? "{}", { mode: 0o600 });
    return {
      PATH: process.env.PATH,
      HOME: dir,
      DOCKER_CONFIG: docker,
      COSIGN_PASSWORD: this.#o.password ?? "",
      // cosign must not reach for the public-good instance's TUF root when offline.
      TUF_ROOT: join(dir, "tuf"),
      ...(process.env.SSL_CERT_FILE ? { SSL_CERT_FILE: process.env.SSL_CERT_FILE } : {}),
    };
  }

  async #run(
    args: string[],
    env: NodeJS.ProcessEnv,
    signal: AbortSignal | undefined,
    what: string,
  ): Promise<void> {
    const r = await new Promise<CosignRun>((resolve) => {
      execFile(
        this.#o.cosignPath,
        args,
        { env, timeout: this.#o.timeoutMs ?? DEFAULT_COSIGN_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024, signal },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, output: `${stdout}\n${stderr}` });
        },
      );
    });
    if (signal?.aborted)
      throw new PatchError(Reason.SigningFailed, `${what} stopped: the worker is stopping`);
    if (r.code !== 0) throw signingError(what, r.output);
  }
}

/** cosign's failure as a reason: the key (permanent), the registry's refusal (permanent), or else transient. */
export function signingError(what: string, output: string): PatchError {
  const line =
    output
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => /^(Error|error)/.test(l))
      .pop() ??
    output.trim().split("\n").pop()?.trim() ??
    "";
  const message = `${what} failed: ${line.slice(0, 500)}`;
  if (
    /(reading key|decrypt|encrypted cosign private key|no such file|invalid key|loading private key)/i.test(
      output,
    )
  )
    return new PatchError(Reason.SigningKeyMissing, message);
  if (
    /(401 unauthorized|403 forbidden|unauthorized:|denied:|authentication required|UNAUTHORIZED|DENIED)/.test(
      output,
    )
  )
    return new PatchError(Reason.SignatureRefused, message);
  return new PatchError(Reason.SigningFailed, message, { transient: true });
}

/** What `cosign verify` and `verify-attestation` established about an image. */
export interface VerifiedImage {
  digest: string;
  /** The predicate of each attestation type found and verified. */
  attestations: Record<string, unknown>;
}

/**
 * Check an image's signature with a public key (file or KMS URI), then each attestation
 * type asked for; a missing or forged signature throws with cosign's reason.
 */
export async function verifyImage(
  ref: string,
  o: {
    key: string;
    types: string[];
    cosignPath?: string;
    insecureHosts?: string[];
    timeoutMs?: number;
    /** Registry credentials (dockerconfigjson text) to read with. @default $DOCKER_CONFIG */
    dockerConfig?: string;
  },
): Promise<VerifiedImage> {
  const cosign = findTool("cosign", o.cosignPath);
  const host = ref.split("/")[0] ?? "";
  const plain = plainHTTP(host, o.insecureHosts);
  const common = [
    "--key",
    o.key,
    "--insecure-ignore-tlog=true",
    ...(plain ? ["--allow-http-registry", "--allow-insecure-registry"] : []),
  ];
  const dir = await mkdtemp(join(tmpdir(), "vuln-patcher-verify-"));
  if (o.dockerConfig !== undefined) {
    await mkdir(join(dir, "docker"), { mode: 0o700 });
    await writeFile(join(dir, "docker", "config.json"), o.dockerConfig, { mode: 0o600 });
  }
  const env = {
    PATH: process.env.PATH,
    HOME: dir,
    DOCKER_CONFIG:
      o.dockerConfig !== undefined ? join(dir, "docker") : (process.env.DOCKER_CONFIG ?? join(dir, "docker")),
  };
  const run = (args: string[]) =>
    new Promise<CosignRun>((resolve) =>
      execFile(
        cosign,
        args,
        { env, timeout: o.timeoutMs ?? DEFAULT_COSIGN_TIMEOUT_MS, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => resolve({ code: err ? 1 : 0, output: err ? stderr : stdout }),
      ),
    );
  try {
    const sig = await run(["verify", ...common, ref]);
    if (sig.code !== 0)
      throw new VerifyError(`${ref}: the signature does not verify: ${lastLine(sig.output)}`);
    const claims = JSON.parse(sig.output) as Array<{
      critical: { image: { "docker-manifest-digest": string } };
    }>;
    const digest = claims[0]!.critical.image["docker-manifest-digest"];
    const attestations: Record<string, unknown> = {};
    for (const type of o.types) {
      const a = await run(["verify-attestation", ...common, "--type", type, ref]);
      if (a.code !== 0)
        throw new VerifyError(`${ref}: no verified ${type} attestation: ${lastLine(a.output)}`);
      const envelope = JSON.parse(a.output.trim().split("\n")[0]!) as { payload: string };
      attestations[type] = (
        JSON.parse(Buffer.from(envelope.payload, "base64").toString("utf8")) as { predicate: unknown }
      ).predicate;
    }
    return { digest, attestations };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export class VerifyError extends Error {
  override name = "VerifyError";
  readonly code = "NOT_VERIFIED";
}

function lastLine(output: string): string {
  return (
    output
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean)
      .filter((l) => /^(Error|error)/.test(l))
      .pop() ??
    output.trim().split("\n").pop() ??
    ""
  ).slice(0, 400);
}
