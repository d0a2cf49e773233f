// Small variations of the vulnerable image, made in the registry itself: the base image
// plus one tiny layer with a different file. Distinct digests (so BuildKit cannot reuse
// one patch for another), the same packages (so each patch does the same real work).
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

/** A ustar header for one regular file of `size` bytes (mode 0644, owner 0, mtime 2026-01-01). */
export function tarHeader(path: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  header.write(path, 0, 100, "utf8");
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(size.toString(8).padStart(11, "0") + "\0", 124);
  header.write(
    Math.floor(Date.UTC(2026, 0, 1) / 1000)
      .toString(8)
      .padStart(11, "0") + "\0",
    136,
  );
  header.write("        ", 148);
  header.write("0", 156);
  header.write("ustar\0", 257);
  header.write("00", 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return header;
}

function tarWithFiles(files: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [path, text] of Object.entries(files)) {
    const content = Buffer.from(text);
    parts.push(tarHeader(path, content.length), content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

const sha = (b: Buffer) => "sha256:" + createHash("sha256").update(b).digest("hex");

async function putBlob(base: string, blob: Buffer): Promise<string> {
  const digest = sha(blob);
  const start = await fetch(`${base}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
  const loc = new URL(start.headers.get("location")!, base);
  loc.searchParams.set("digest", digest);
  const put = await fetch(loc, {
    method: "PUT",
    body: new Uint8Array(blob),
    headers: { "content-type": "application/octet-stream" },
  });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
  return digest;
}

/**
 * registry/repo:srcTag + a layer holding /etc/vuln-patcher-variant (or `files`, paths
 * without the leading slash) -> registry/repo:dstTag. Returns the new digest.
 */
export async function pushVariant(
  registry: string,
  repo: string,
  srcTag: string,
  dstTag: string,
  marker: string,
  files: Record<string, string> = { "etc/vuln-patcher-variant": marker + "\n" },
): Promise<string> {
  const base = `http://${registry}/v2/${repo}`;
  const accept =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
  const manifest = (await (
    await fetch(`${base}/manifests/${srcTag}`, { headers: { accept } })
  ).json()) as any;
  const config = (await (await fetch(`${base}/blobs/${manifest.config.digest}`)).json()) as any;
  const tar = tarWithFiles(files);
  const gz = gzipSync(tar);
  const layerDigest = await putBlob(base, gz);
  config.rootfs.diff_ids = [...config.rootfs.diff_ids, sha(tar)];
  config.history = [
    ...(config.history ?? []),
    { created: "2026-01-01T00:00:00Z", created_by: `vuln-patcher bench variant ${marker}` },
  ];
  const configBlob = Buffer.from(JSON.stringify(config));
  const configDigest = await putBlob(base, configBlob);
  const layerType = manifest.mediaType?.includes("docker")
    ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
    : "application/vnd.oci.image.layer.v1.tar+gzip";
  const next = {
    ...manifest,
    config: { ...manifest.config, digest: configDigest, size: configBlob.length },
    layers: [...manifest.layers, { mediaType: layerType, digest: layerDigest, size: gz.length }],
  };
  const body = Buffer.from(JSON.stringify(next));
  const put = await fetch(`${base}/manifests/${dstTag}`, {
    method: "PUT",
    body: new Uint8Array(body),
    headers: { "content-type": manifest.mediaType ?? "application/vnd.oci.image.manifest.v1+json" },
  });
  if (put.status !== 201) throw new Error(`manifest put: ${put.status} ${await put.text()}`);
  return sha(body);
}

/** Another tag for the same manifest or index (same digest). */
export async function retag(registry: string, repo: string, srcTag: string, dstTag: string): Promise<void> {
  const base = `http://${registry}/v2/${repo}`;
  const res = await fetch(`${base}/manifests/${srcTag}`, {
    headers: {
      accept:
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json",
    },
  });
  const type = res.headers.get("content-type")!;
  const body = Buffer.from(await res.arrayBuffer());
  const put = await fetch(`${base}/manifests/${dstTag}`, {
    method: "PUT",
    body: new Uint8Array(body),
    headers: { "content-type": type },
  });
  if (put.status !== 201) throw new Error(`retag: ${put.status}`);
}
