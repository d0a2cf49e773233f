// Registry credentials from a dockerconfigjson (what a sbomscanner Registry's
// authSecret holds, and what copa reads through DOCKER_CONFIG).
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface Credential {
  username: string;
  password: string;
}

export type CredentialLookup = (registryHost: string) => Credential | undefined;

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
}

function normaliseHost(key: string): string {
  let k = key.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  if (k === "index.docker.io" || k === "registry-1.docker.io") k = "docker.io";
  return k;
}

/** Credentials keyed by registry host, from dockerconfigjson text. Throws on malformed JSON (without echoing it). */
export function parseDockerConfig(text: string): Map<string, Credential> {
  let cfg: DockerConfig;
  try {
    cfg = JSON.parse(text) as DockerConfig;
  } catch {
    throw new Error("the registry credentials are not valid dockerconfigjson");
  }
  const out = new Map<string, Credential>();
  for (const [host, entry] of Object.entries(cfg.auths ?? {})) {
    let username = entry.username ?? "";
    let password = entry.password ?? entry.identitytoken ?? "";
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const i = decoded.indexOf(":");
      if (i > 0) {
        username = decoded.slice(0, i);
        password = decoded.slice(i + 1);
      }
    }
    if (username || password) out.set(normaliseHost(host), { username, password });
  }
  return out;
}

export function credentialsFrom(map: Map<string, Credential>): CredentialLookup {
  return (host) => map.get(normaliseHost(host));
}

/** $DOCKER_CONFIG/config.json, if present. */
export function credentialsFromDockerConfigDir(dir = process.env.DOCKER_CONFIG): CredentialLookup {
  return credentialsFrom(dockerConfigDirCredentials(dir));
}

/** dockerconfigjson text for one registry (what `vuln-patcher patch -u/-p` hands copa). */
export function dockerConfigJSON(host: string, cred: Credential): string {
  return dockerConfigText(new Map([[host, cred]]));
}

/** dockerconfigjson text for several registries (one run's credentials, handed to copa). */
export function dockerConfigText(creds: ReadonlyMap<string, Credential>): string {
  const auths: Record<string, { auth: string }> = {};
  for (const [host, c] of creds)
    auths[host] = { auth: Buffer.from(`${c.username}:${c.password}`).toString("base64") };
  return JSON.stringify({ auths });
}

/** The credentials in $DOCKER_CONFIG/config.json, by host (empty when there is none). */
export function dockerConfigDirCredentials(dir = process.env.DOCKER_CONFIG): Map<string, Credential> {
  if (!dir) return new Map();
  try {
    return parseDockerConfig(readFileSync(join(dir, "config.json"), "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw err;
  }
}

export { normaliseHost };
