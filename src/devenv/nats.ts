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

/**
 * A JetStream cluster of `n` nats-servers on `address` (routes between them on loopback
 * ports, a store each): what a production NATS is. `url` names every node, so a client
 * fails over to the next; streams made with replicas n survive a node.
 */
export async function natsCluster(
  dir: string,
  n: number,
  address = "127.0.0.1",
): Promise<NatsServer & { nodes: NatsServer[] }> {
  const ports = await Promise.all(
    Array.from({ length: n }, async () => ({
      client: await freePort(address),
      route: await freePort(address),
      monitor: await freePort(address),
    })),
  );
  const routes = ports.map((p) => `nats://${address}:${p.route}`).join(",");
  const nodes = await Promise.all(
    ports.map(async (p, i) => {
      const name = `node-${i + 1}`;
      const store = join(dir, `nats-${name}`);
      await mkdir(store, { recursive: true });
      const monitorURL = `http://${address}:${p.monitor}`;
      const component = new Component({
        name: `nats-${name}`,
        command: goBinary("nats-server"),
        args: [
          "-a",
          address,
          "-p",
          String(p.client),
          "-m",
          String(p.monitor),
          "-js",
          "-sd",
          store,
          "-n",
          name,
          "--cluster_name",
          "vuln-patcher-dev",
          "--cluster",
          `nats://${address}:${p.route}`,
          "--routes",
          routes,
        ],
        logDir: dir,
        // The full health check: JetStream up, a meta leader known and this node's
        // streams current. Nodes start together (each waits for a quorum); one started
        // again is ready once it has caught up.
        ready: async () => (await httpStatus(`${monitorURL}/healthz`)) === 200,
      });
      return { component, url: `nats://${address}:${p.client}`, monitorURL };
    }),
  );
  return { ...nodes[0]!, url: nodes.map((x) => x.url).join(","), nodes };
}
