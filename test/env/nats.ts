import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Component } from "./component.ts";
import { freePort, httpStatus } from "./net.ts";
import { systemBinary } from "./tools.ts";

export interface NatsServer {
  component: Component;
  url: string;
  monitorURL: string;
}

/** nats-server (Debian's) with JetStream, its store in `dir/nats`. */
export async function natsServer(dir: string): Promise<NatsServer> {
  const port = await freePort();
  const monitor = await freePort();
  const store = join(dir, "nats");
  await mkdir(store, { recursive: true });
  const monitorURL = `http://127.0.0.1:${monitor}`;
  const component = new Component({
    name: "nats-server",
    command: systemBinary("nats-server", "nats-server"),
    args: [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-m",
      String(monitor),
      "-js",
      "-sd",
      store,
      "-n",
      "vuln-patcher-dev",
    ],
    logDir: dir,
    ready: async () => (await httpStatus(`${monitorURL}/healthz?js-enabled-only=true`)) === 200,
  });
  return { component, url: `nats://127.0.0.1:${port}`, monitorURL };
}
