// The Debian mirror as Pods on the environment's node see it. copa installs the fixed
// packages with apt inside BuildKit; in the cluster BuildKit runs in a Pod, whose
// network ends at the node's bridge. The node's DNS answers the mirror's host name
// (deb.debian.org) with the bridge address, and this process, listening there, passes
// each GET on to the mirror the environment's images name (what debootstrap and the
// local tests use). Pods send nothing past the bridge.
//
// It is also the HTTPS proxy of copa's library updates (HTTPS_PROXY): a CONNECT tunnel
// to the hosts --connect names (PyPI, npm's registry) and to nothing else; TLS stays
// end to end between the Pod and the registry.
//
// Standalone (no imports from the project): the environment starts it as a child
// process with Node's own TypeScript support, and stops it by pid.
//   node mirror-proxy.ts [--owner-dir=DIR] [--connect=HOST:PORT,...] LISTEN_HOST:PORT /debian=http://deb.debian.org/debian ...
import { createServer } from "node:http";
import { connect } from "node:net";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream } from "node:stream/web";

// --owner-dir=DIR names the environment, so a reclaim finds this process by its directory.
const [listen, ...maps] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const tunnels = new Set(
  process.argv
    .slice(2)
    .filter((a) => a.startsWith("--connect="))
    .flatMap((a) => a.slice("--connect=".length).split(","))
    .filter(Boolean),
);
if (!listen || maps.length === 0) {
  process.stderr.write("usage: mirror-proxy HOST:PORT /prefix=URL ...\n");
  process.exit(2);
}
const routes = maps
  .map((m) => {
    const i = m.indexOf("=");
    return { prefix: m.slice(0, i), upstream: m.slice(i + 1).replace(/\/$/, "") };
  })
  // Longest prefix first: /debian-security before /debian.
  .sort((a, b) => b.prefix.length - a.prefix.length);

const server = createServer((req, res) => {
  const url = req.url ?? "/";
  if (url === "/healthz") {
    res.writeHead(200).end("ok\n");
    return;
  }
  const route = routes.find((r) => url === r.prefix || url.startsWith(r.prefix + "/"));
  if (!route || (req.method !== "GET" && req.method !== "HEAD")) {
    res.writeHead(route ? 405 : 404).end();
    return;
  }
  const target = route.upstream + url.slice(route.prefix.length);
  // identity: pass bytes and lengths through unchanged.
  const headers: Record<string, string> = { "accept-encoding": "identity" };
  for (const h of ["range", "if-modified-since", "if-none-match", "if-range"]) {
    const v = req.headers[h];
    if (typeof v === "string") headers[h] = v;
  }
  fetch(target, { method: req.method, headers, redirect: "follow", signal: AbortSignal.timeout(300_000) })
    .then((up) => {
      const out: Record<string, string> = {};
      for (const h of [
        "content-type",
        "content-length",
        "last-modified",
        "etag",
        "content-range",
        "accept-ranges",
      ]) {
        const v = up.headers.get(h);
        if (v) out[h] = v;
      }
      res.writeHead(up.status, out);
      if (!up.body || req.method === "HEAD") return void res.end();
      // pipeline: an upstream error mid-body ends this response, not the process.
      pipeline(Readable.fromWeb(up.body as ReadableStream), res).catch((err: Error) =>
        process.stderr.write(`GET ${target}: ${err.message}\n`),
      );
    })
    .catch((err: Error) => {
      process.stderr.write(`GET ${target}: ${err.message}\n`);
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
});
// CONNECT host:port, for the allowed hosts only: the bytes pass through (TLS end to end).
server.on("connect", (req, socket, head) => {
  const to = req.url ?? "";
  if (!tunnels.has(to)) {
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
    return;
  }
  const i = to.lastIndexOf(":");
  let open = false;
  const upstream = connect(Number(to.slice(i + 1)), to.slice(0, i), () => {
    open = true;
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.setTimeout(300_000, () => upstream.destroy());
  upstream.on("error", (err) => {
    process.stderr.write(`CONNECT ${to}: ${err.message}\n`);
    // An answer only before the tunnel: after it, the bytes are the client's TLS.
    if (!open && socket.writable) socket.end("HTTP/1.1 502 Bad Gateway\r\n\r\n");
  });
  // Either side gone (an error, an idle timeout, the end): the other goes too.
  upstream.on("close", () => (open ? socket.destroy() : socket.end()));
  socket.on("close", () => upstream.destroy());
  socket.on("error", () => upstream.destroy());
});
const colon = listen.lastIndexOf(":");
server.listen(Number(listen.slice(colon + 1)), listen.slice(0, colon), () => {
  process.stderr.write(
    `mirror proxy on ${listen}: ${routes.map((r) => `${r.prefix} -> ${r.upstream}`).join(", ")}; CONNECT to ${[...tunnels].join(", ") || "nothing"}\n`,
  );
});
for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => server.close(() => process.exit(0)));
