// The oldest Node.js vuln-patcher runs on (package.json's engines): older ones fail deep in
// a dependency (undici reads node:zlib's zstd, which Node 20 lacks) with a stack trace, so
// the CLI says it first, in one line. npm ci installs Node 24 (the `node` devDependency).
export const MIN_NODE = "22.19.0";

/** Why this Node.js is too old, or undefined when it will do. */
export function nodeTooOld(
  version: string = process.versions.node,
  min: string = MIN_NODE,
): string | undefined {
  const have = version.replace(/^v/, "").split(".").map(Number);
  const need = min.split(".").map(Number);
  for (let i = 0; i < need.length; i++) {
    const h = have[i] ?? 0;
    if (h > need[i]!) return undefined;
    if (h < need[i]!)
      return `Node.js ${version} is too old: vuln-patcher needs ${min} or newer; run it through npm (npm run vuln-patcher -- ...) or node_modules/.bin/node, which npm ci installs (Node 24)`;
  }
  return undefined;
}
