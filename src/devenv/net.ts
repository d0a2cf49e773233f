// Free ports and HTTP probes for the environment's processes.
import { createServer } from "node:net";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";

/** Ports this process handed out: the kernel may offer a just-closed port again. */
const handedOut = new Set<number>();

/**
 * A free TCP port on `host` (the kernel picks it; there is a small window before the
 * component binds it), never one this process handed out before (two components asking
 * one after the other could otherwise get the same port).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (;;) {
    const port = await kernelPort(host);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** GET url and resolve the HTTP status (TLS verification off: used only for readiness of our own children). */
export function httpStatus(url: string, timeoutMs = 2_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith("https:") ? httpsRequest : httpRequest)(
      url,
      { method: "GET", rejectUnauthorized: false, timeout: timeoutMs },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}
