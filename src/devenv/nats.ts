// nats-server with JetStream for the environment, its store in the environment's directory.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Component } from "./component.ts";
import { freePort, httpStatus } from "./net.ts";
import { goBinary } from "./tools.ts";

export interface NatsServer {
  component: Component;
  url: string;
  monitorURL: string;
  /** Set when the server asks for a user and password. */
  auth?: { user: string; password: string };
}

/**
 * nats-server (built from the Go module proxy, as production runs it) with JetStream, its store in `dir/nats`, on `address` (clients);
 * monitoring there too. With `auth`, clients need a user and a random password.
 */
export async function natsServer(
  dir: string,
  address = "127.0.0.1",
  o: { auth?: boolean } = {},
): Promise<NatsServer> {
  const port = await freePort(address);
  const monitor = await freePort(address);
  const store = join(dir, "nats");
  await mkdir(store, { recursive: true });
  const monitorURL = `http://${address}:${monitor}`;
  const auth = o.auth ? { user: "vuln-patcher", password: randomBytes(18).toString("base64url") } : undefined;
  const component = new Component({
    name: "nats-server",
    command: goBinary("nats-server"),
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
      // The password on the command line: readable by this machine's users, as the
      // environment's other credentials are; it never reaches a log of ours.
      ...(auth ? ["--user", auth.user, "--pass", auth.password] : []),
    ],
    logDir: dir,
    ready: async () => (await httpStatus(`${monitorURL}/healthz?js-enabled-only=true`)) === 200,
  });
  return { component, url: `nats://${address}:${port}`, monitorURL, ...(auth ? { auth } : {}) };
}
