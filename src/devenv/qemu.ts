// QEMU user emulation for foreign-architecture binaries (debootstrap's second stage of
// an arm64 rootfs, BuildKit's arm64 build steps): Debian's qemu-user-static, registered
// in binfmt_misc with the F flag, so the kernel opens the interpreter once and it works
// inside any container or chroot. binfmt_misc is global to the machine: ensureEmulation
// records what it changed, and undo() puts back exactly that (nothing if the entry or
// the mount were already there).
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);
const BINFMT = "/proc/sys/fs/binfmt_misc";

/** Debian architecture name -> qemu's. */
const QEMU_ARCH: Record<string, string> = {
  arm64: "aarch64",
  armhf: "arm",
  ppc64el: "ppc64le",
  s390x: "s390x",
};

export interface Emulation {
  /** e.g. ["arm64"] */
  arches: string[];
  undo(): Promise<void>;
}

function parseDebianBinfmt(file: string): {
  interpreter: string;
  magic: string;
  mask: string;
  offset: string;
} {
  const fields = new Map(
    readFileSync(file, "utf8")
      .split("\n")
      .map((l) => l.trim().split(/\s+/, 2) as [string, string])
      .filter(([k, v]) => k && v),
  );
  const need = (k: string) => {
    const v = fields.get(k);
    if (!v) throw new Error(`${file} has no ${k}`);
    return v;
  };
  return {
    interpreter: need("interpreter"),
    magic: need("magic"),
    mask: need("mask"),
    offset: fields.get("offset") ?? "0",
  };
}

/** Make `arches` runnable here; throws with the reason when this machine cannot. */
export async function ensureEmulation(arches: string[] = ["arm64"]): Promise<Emulation> {
  if (process.getuid?.() !== 0) throw new Error("registering QEMU in binfmt_misc needs root");
  const undo: Array<() => Promise<void>> = [];
  if (!existsSync(`${BINFMT}/register`)) {
    await run("mount", ["-t", "binfmt_misc", "binfmt_misc", BINFMT]).catch((err: Error) => {
      throw new Error(`cannot mount binfmt_misc: ${err.message}`);
    });
    undo.push(async () => void (await run("umount", [BINFMT]).catch(() => {})));
  }
  for (const arch of arches) {
    const q = QEMU_ARCH[arch];
    if (!q) throw new Error(`no QEMU mapping for ${arch}`);
    const name = `qemu-${q}`;
    if (existsSync(`${BINFMT}/${name}`)) {
      if (/^enabled/m.test(readFileSync(`${BINFMT}/${name}`, "utf8"))) continue;
      throw new Error(`${BINFMT}/${name} exists but is disabled`);
    }
    const spec = `/usr/share/binfmts/${name}`;
    if (!existsSync(spec)) throw new Error(`${spec} is missing: install the Debian package qemu-user-static`);
    const b = parseDebianBinfmt(spec);
    // F: open the interpreter now (works in other mount namespaces); P: keep argv[0].
    await writeFile(`${BINFMT}/register`, `:${name}:M:${b.offset}:${b.magic}:${b.mask}:${b.interpreter}:FP`);
    undo.push(async () => void (await writeFile(`${BINFMT}/${name}`, "-1").catch(() => {})));
  }
  return {
    arches,
    async undo() {
      for (const u of undo.reverse()) await u();
    },
  };
}
