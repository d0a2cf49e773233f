// copa's command line, built as an argv array by a pure function: never a shell
// string, and every image reference validated first.
import { formatImageRef, type ImageRef, parseImageRef } from "../api/index.ts";

export interface CopaOptions {
  /** Source image, pinned by digest where known. */
  image: ImageRef;
  /** Destination: a full reference (registry/repository:tag). */
  target: ImageRef;
  /** BuildKit address: unix:///path or tcp://host:port. */
  buildkitAddr: string;
  /** Path of the native update manifest; absent = update every package (copa without -r). */
  manifestPath?: string;
  /**
   * The manifest is a Trivy report with library updates (copa's native format has no
   * package paths): which package types copa updates from it. Needs COPA_EXPERIMENTAL=1.
   */
  libraries?: { pkgTypes: "library" | "os,library" };
  /** Path where copa writes its OpenVEX document (only with a manifest). */
  vexPath?: string;
  /** Go duration for copa's own --timeout. */
  timeout: string;
  ignoreErrors?: boolean;
  /** mTLS to BuildKit. */
  tls?: { caCert: string; cert: string; key: string };
  /** Push to the registry (always in a cluster: there is no docker daemon). @default true */
  push?: boolean;
  /** Platforms to patch in update-all mode on an index. */
  platforms?: string[];
}

const ADDR_RE = /^(unix:\/\/\/[A-Za-z0-9_./-]+|tcp:\/\/[A-Za-z0-9.-]+:[0-9]{1,5})$/;
const DURATION_RE = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const PLATFORM_RE = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/;

export function copaArgv(o: CopaOptions): string[] {
  if (!ADDR_RE.test(o.buildkitAddr))
    throw new Error(
      `invalid BuildKit address ${JSON.stringify(o.buildkitAddr)}: expected unix:///path or tcp://host:port`,
    );
  if (!DURATION_RE.test(o.timeout)) throw new Error(`invalid timeout ${JSON.stringify(o.timeout)}`);
  // Re-parse both references: whatever built them, what reaches copa is a valid reference.
  const image = formatImageRef(parseImageRef(formatImageRef(o.image)));
  if (!o.target.tag || o.target.digest) throw new Error("the patch target needs a tag and no digest");
  const target = formatImageRef(parseImageRef(formatImageRef(o.target)));
  const argv = ["patch", "--image", image, "--tag", target, "--addr", o.buildkitAddr, "--timeout", o.timeout];
  if (o.manifestPath && o.libraries)
    // The versions in the report are the ones chosen (src/api/library.ts): "major" lets
    // copa take each as it stands (its own level rule would only agree or drop it).
    argv.push(
      "--report",
      o.manifestPath,
      "--scanner",
      "trivy",
      "--pkg-types",
      o.libraries.pkgTypes,
      "--library-patch-level",
      "major",
    );
  else if (o.manifestPath) argv.push("--report", o.manifestPath, "--scanner", "native");
  if (o.manifestPath && o.vexPath) argv.push("--format", "openvex", "--output", o.vexPath);
  if (o.ignoreErrors) argv.push("--ignore-errors");
  if (o.push ?? true) argv.push("--push");
  if (o.tls) argv.push("--cacert", o.tls.caCert, "--cert", o.tls.cert, "--key", o.tls.key);
  if (o.platforms?.length && !o.manifestPath) {
    for (const p of o.platforms)
      if (!PLATFORM_RE.test(p)) throw new Error(`invalid platform ${JSON.stringify(p)}`);
    argv.push("--platform", o.platforms.join(","));
  }
  return argv;
}
