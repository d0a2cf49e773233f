// The small HTTP server every long-running command has: /healthz, /readyz, /metrics,
// plus whatever routes a command adds (the API and UI).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";

export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean;

export interface HttpServerOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  registry?: Registry;
  healthy?: () => boolean;
  ready?: () => boolean;
  routes?: Route[];
}

export interface RunningServer {
  server: Server;
  /** http://host:port */
  url: string;
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  const host = i > 0 ? listen.slice(0, i) : "0.0.0.0";
  const port = Number(i >= 0 ? listen.slice(i + 1) : listen);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`invalid listen address ${JSON.stringify(listen)} (host:port)`);
  return { host: host.replace(/^\[|\]$/g, ""), port };
}

export async function startHttpServer(o: HttpServerOptions): Promise<RunningServer> {
  const { host, port } = parseListen(o.listen);
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      try {
        if (url.pathname === "/healthz" || url.pathname === "/livez")
          return send(
            res,
            (o.healthy?.() ?? true) ? 200 : 500,
            "text/plain",
            (o.healthy?.() ?? true) ? "ok\n" : "unhealthy\n",
          );
        if (url.pathname === "/readyz")
          return send(
            res,
            (o.ready?.() ?? true) ? 200 : 503,
            "text/plain",
            (o.ready?.() ?? true) ? "ok\n" : "not ready\n",
          );
        if (url.pathname === "/metrics" && o.registry)
          return send(res, 200, o.registry.contentType, await o.registry.metrics());
        for (const r of o.routes ?? []) if (await r(req, res, url)) return;
        send(res, 404, "application/json", JSON.stringify({ error: "not found" }) + "\n");
      } catch (err) {
        if (!res.headersSent)
          send(res, 500, "application/json", JSON.stringify({ error: (err as Error).message }) + "\n");
        else res.end();
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const actual = typeof addr === "object" && addr ? addr.port : port;
  return {
    server,
    url: `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${actual}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  res.end(body);
}
