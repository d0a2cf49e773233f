import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Component } from "./component.ts";
import { freePort, httpStatus } from "./net.ts";
import { systemBinary } from "./tools.ts";

export interface Registry {
  component: Component;
  /** host:port, plain HTTP. */
  host: string;
  dataDir: string;
}

/** Debian's docker-registry (distribution 2.8) over plain HTTP on loopback. */
export async function registryServer(dir: string, dataDir = join(dir, "registry")): Promise<Registry> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  await mkdir(dataDir, { recursive: true });
  const config = join(dir, "registry.yml");
  await writeFile(
    config,
    [
      "version: 0.1",
      "log: {level: warn, accesslog: {disabled: true}}",
      `storage: {filesystem: {rootdirectory: ${JSON.stringify(dataDir)}}, delete: {enabled: true}}`,
      `http: {addr: "${host}"}`,
      "",
    ].join("\n"),
  );
  const component = new Component({
    name: "docker-registry",
    command: systemBinary("docker-registry", "docker-registry"),
    args: ["serve", config],
    logDir: dir,
    ready: async () => (await httpStatus(`http://${host}/v2/`)) === 200,
  });
  return { component, host, dataDir };
}
