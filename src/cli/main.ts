#!/usr/bin/env node
// vuln-patcher: one CLI, one subcommand per job. Every failure ends in one clear line
// on stderr and a non-zero exit (2 for bad input, 1 for everything else).

import { errorMessage, nodeTooOld, UsageError } from "../util/index.ts";

type Command = { summary: string; run: (argv: string[]) => Promise<number> };

const commands: Record<string, Command> = {
  convert: {
    summary: "print copa's native manifest for a VulnerabilityReport file",
    run: async (a) => (await import("./convert.ts")).convertCommand(a),
  },
  controller: {
    summary: "watch VulnerabilityReports, keep PatchJobs, publish patch requests to NATS",
    run: async (a) => (await import("./controller.ts")).controllerCommand(a),
  },
  worker: {
    summary: "take patch requests from NATS and run copa on BuildKit",
    run: async (a) => (await import("./worker.ts")).workerCommand(a),
  },
  patch: {
    summary: "patch one image now (copa on BuildKit) and print a before/after summary",
    run: async (a) => (await import("./patch.ts")).patchCommand(a),
  },
  verify: {
    summary: "check a patched image's signature and its VEX and provenance attestations",
    run: async (a) => (await import("./verify.ts")).verifyCommand(a),
  },
  admission: {
    summary: "a validating webhook: admit Pods only with images signed by the workers' key",
    run: async (a) => (await import("./admission.ts")).admissionCommand(a),
  },
  server: {
    summary: "serve the HTTP API and the web UI (Kubernetes tokens, RBAC-checked)",
    run: async (a) => (await import("./server.ts")).serverCommand(a),
  },
  demo: {
    summary: "run the whole pipeline on local real components and show the result",
    run: async (a) => (await import("./demo.ts")).demoCommand(a),
  },
  dev: {
    summary: "bring the real-component dev environment up/down (dev up|down|status)",
    run: async (a) => (await import("./dev.ts")).devCommand(a),
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    "Usage: vuln-patcher <command> [flags]",
    "",
    "Commands:",
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "Every command reads KUBECONFIG and NATS_URL from the environment; flags override them.",
    "Run 'vuln-patcher <command> --help' for a command's flags.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  // Before any command's modules load: on an old Node they fail with a stack trace.
  const old = nodeTooOld();
  if (old) throw new Error(old);
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}; run 'vuln-patcher --help'`);
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vuln-patcher: ${errorMessage(err).split("\n")[0]}\n`);
    if (process.env.DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof UsageError ? err.exitCode : 1;
  },
);
