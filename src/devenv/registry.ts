// The environment's registries: plain HTTP on loopback, and one with basic auth.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Component } from "./component.ts";
import { freePort, httpStatus } from "./net.ts";
import { systemBinary } from "./tools.ts";
import { RegistryClient } from "../registry/index.ts";

/**
 * Registries of this process's environments that serve plain HTTP on a non-loopback
 * address (a real node's bridge): the test helpers' registry clients allow them.
 */
export const plainHTTPRegistries = new Set<string>();

/** A registry client for test helpers: plain HTTP to loopback and to the environments' registries. */
export function testRegistryClient(): RegistryClient {
  return new RegistryClient({ insecureHosts: [...plainHTTPRegistries] });
}

export interface Registry {
  component: Component;
  /** host:port, plain HTTP. */
  host: string;
  dataDir: string;
}

/** Basic auth for a registry: the htpasswd file (bcrypt) and the credentials it holds. */
export interface RegistryAuth {
  username: string;
  password: string;
  htpasswd: string;
}

/**
 * Debian's docker-registry (distribution 2.8) over plain HTTP on loopback (or on the
 * node's bridge address, `opts.address`, when Pods pull from it); with `auth`, basic
 * auth is required.
 */
export async function registryServer(
  dir: string,
  dataDir = join(dir, "registry"),
  opts: { name?: string; auth?: RegistryAuth; address?: string } = {},
): Promise<Registry> {
  const address = opts.address ?? "127.0.0.1";
  const port = await freePort(address);
  const host = `${address}:${port}`;
  if (address !== "127.0.0.1") plainHTTPRegistries.add(host);
  await mkdir(dataDir, { recursive: true });
  const name = opts.name ?? "docker-registry";
  const config = join(dir, `${name}.yml`);
  await writeFile(
    config,
    [
      "version: 0.1",
      "log: {level: warn, accesslog: {disabled: true}}",
      `storage: {filesystem: {rootdirectory: ${JSON.stringify(dataDir)}}, delete: {enabled: true}}`,
      `http: {addr: "${host}"}`,
      ...(opts.auth
        ? [`auth: {htpasswd: {realm: vuln-patcher-dev, path: ${JSON.stringify(opts.auth.htpasswd)}}}`]
        : []),
      "",
    ].join("\n"),
  );
  const component = new Component({
    name,
    command: systemBinary("docker-registry", "docker-registry"),
    args: ["serve", config],
    logDir: dir,
    ready: async () => (await httpStatus(`http://${host}/v2/`)) === (opts.auth ? 401 : 200),
  });
  return { component, host, dataDir };
}

/** Credentials for a test registry: a random password, hashed with bcrypt by Debian's htpasswd. */
export async function makeRegistryAuth(dir: string, username = "patcher"): Promise<RegistryAuth> {
  const { randomBytes } = await import("node:crypto");
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const password = `pw-${randomBytes(18).toString("base64url")}`;
  const htpasswd = join(dir, "registry.htpasswd");
  // -i reads the password from stdin: it never appears in a process list.
  const child = promisify(execFile)(systemBinary("htpasswd", "apache2-utils"), ["-niB", username]);
  child.child.stdin!.end(password + "\n");
  const { stdout } = await child;
  await writeFile(htpasswd, stdout, { mode: 0o600 });
  return { username, password, htpasswd };
}
