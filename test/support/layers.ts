// Image layers in memory for tests of the layer readers: gzipped tar archives served by
// digest, each read counted (a layer is scanned once per process).
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import type { BlobReader } from "../../src/registry/pkgdb.ts";
import type { Descriptor } from "../../src/registry/client.ts";

export function layers(...tars: Buffer[]): {
  reader: BlobReader;
  descriptors: Descriptor[];
  reads: string[];
} {
  const byDigest = new Map<string, Buffer>();
  const descriptors = tars.map((t) => {
    const gz = gzipSync(t);
    const digest = "sha256:" + createHash("sha256").update(gz).digest("hex");
    byDigest.set(digest, gz);
    return { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size: gz.length };
  });
  const reads: string[] = [];
  return {
    descriptors,
    reads,
    reader: {
      async blob(_ref, digest) {
        reads.push(digest);
        const b = byDigest.get(digest);
        if (!b) throw new Error(`no blob ${digest}`);
        return Readable.from([b]);
      },
    },
  };
}
