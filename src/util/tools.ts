// Where the programs we run come from: PATH first (a user's own copa, an image's
// /usr/local/bin), then the version-keyed cache that scripts/build-tools.sh fills
// (~/.cache/vuln-patcher/bin, or $VULN_PATCHER_CACHE). A missing one is its own error
// that says what to run, never mistaken for something else (an unreachable BuildKit).
import { accessSync, constants, statSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

export function cacheDir(): string {
  return process.env.VULN_PATCHER_CACHE ?? join(homedir(), ".cache", "vuln-patcher");
}

/** The cache's copy of a Go-built tool (a symlink to its versioned file). */
export function cachedTool(name: string): string {
  return join(cacheDir(), "bin", name);
}

export class MissingToolError extends Error {
  override name = "MissingToolError";
  readonly code = "TOOL_MISSING";
  readonly tool: string;
  constructor(tool: string, message: string) {
    super(message);
    this.tool = tool;
  }
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** How to get each tool, for the error message. */
const HOW: Record<string, string> = {
  copa: "run `make setup` (or scripts/build-tools.sh copa)",
  buildctl: "run `make setup` (or scripts/build-tools.sh buildkit)",
  buildkitd: "run `make setup` (or scripts/build-tools.sh buildkit)",
  kubectl: "run `make setup` (or scripts/build-tools.sh kube)",
  helm: "run `make setup` (or scripts/build-tools.sh helm)",
  cosign: "run `make setup` (or scripts/build-tools.sh cosign)",
};

/**
 * The path of `name`: `explicit` when given (it must be there), else the first on PATH,
 * else the cache. Throws MissingToolError naming what to run.
 */
export function findTool(name: string, explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) {
    if (executable(explicit)) return explicit;
    throw new MissingToolError(name, `${name} not found at ${explicit} (not an executable file)`);
  }
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  const cached = cachedTool(name);
  if (executable(cached)) return cached;
  throw new MissingToolError(
    name,
    `${name} is not installed: not on PATH and not in ${join(cacheDir(), "bin")}; ${HOW[name] ?? `install ${name}`}, or pass its path`,
  );
}
