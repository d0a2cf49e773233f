// The files that say which language library is installed at which version: a Node.js
// package's package.json in a node_modules directory, a Python distribution's
// *.dist-info/METADATA. Read from the layers, like dpkg's status, so the before and
// after of a library update are measured in the image, never taken from copa's word.

const NODE_RE = /(^|\/)node_modules\/(@[^/]+\/)?[^/@][^/]*\/package\.json$/;
const PYTHON_RE = /(^|\/)[^/]+\.dist-info\/METADATA$/;

export function isLibraryFile(name: string): boolean {
  return NODE_RE.test(name) || PYTHON_RE.test(name);
}

/** The version a package.json or METADATA file declares; undefined when it declares none. */
export function libraryVersion(name: string, content: Buffer): string | undefined {
  const text = content.toString("utf8");
  if (name.endsWith("package.json")) {
    try {
      const v = (JSON.parse(text) as { version?: unknown }).version;
      return typeof v === "string" && v.length <= 128 ? v : undefined;
    } catch {
      return undefined;
    }
  }
  // The header ends at the first blank line; the description after it may say anything.
  const header = text.split(/\r?\n\r?\n/, 1)[0] ?? "";
  const v = /^Version:[ \t]*(\S{1,128})[ \t]*$/m.exec(header)?.[1];
  return v;
}

/** PEP 503's normal form, as the name part of a .dist-info directory compares. */
export function normalizePythonName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, "_");
}

/** What one library update looks for: its type, name and (when the report gave it) where it was. */
export interface LibraryLocation {
  type: string;
  name: string;
  path?: string;
}

/**
 * Whether a library file is the package asked for. A package.json is matched by its
 * path; a METADATA file by its site directory and name, whatever version its directory
 * carries (an update renames `urllib3-1.26.4.dist-info` to `urllib3-1.26.5.dist-info`).
 */
export function matchesLocation(file: string, loc: LibraryLocation): boolean {
  if (loc.type === "node-pkg")
    return file.endsWith(`node_modules/${loc.name}/package.json`) && (!loc.path || file === loc.path);
  const m = /^(.*\/)?([^/]+)-[^/-]+\.dist-info\/METADATA$/.exec(file);
  if (!m || normalizePythonName(m[2]!) !== normalizePythonName(loc.name)) return false;
  if (!loc.path) return true;
  const site = /^(.*\/)?[^/]+\.dist-info\/METADATA$/.exec(loc.path)?.[1] ?? "";
  return (m[1] ?? "") === site;
}
