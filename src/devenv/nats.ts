// nats-server with JetStream for the environment, its store in the environment's directory.
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

/** nats-server (Debian's) with JetStream, its store in `dir/nats`, on `address` (clients); monitoring there too. */
export async function natsServer(dir: string, address = "127.0.0.1"): Promise<NatsServer> {
  const port = await freePort(address);
  const monitor = await freePort(address);
  const store = join(dir, "nats");
  await mkdir(store, { recursive: true });
  const monitorURL = `http://${address}:${monitor}`;
  const component = new Component({
    name: "nats-server",
    command: systemBinary("nats-server", "nats-server"),
    args: [
      "-a",
      address,
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
  return { component, url: `nats://${address}:${port}`, monitorURL };
}
