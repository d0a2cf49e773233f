// Reading the entries of a layer's tar stream (ustar, pax, GNU long names; tar-stream
// parses them): the content of the entries a caller asks for, the rest skipped, so a
// large layer is read once without being held in memory. Bounded: an entry wanted over
// `maxFileBytes`, or more than `maxEntries` entries, ends the read with a LimitError.
import type { Readable } from "node:stream";
import { extract } from "tar-stream";

export interface TarEntry {
  /** Path without a leading "./" or "/". */
  name: string;
  /** "file", "directory", "symlink", ... (tar-stream's names) */
  type: string;
  size: number;
  linkname: string;
  /** Present when `want(name)` was true and it is a file. */
  content?: Buffer;
}

export interface TarLimits {
  /** A wanted file bigger than this is an error. @default 64 MiB */
  maxFileBytes?: number;
  /** More entries than this is an error. @default 500_000 */
  maxEntries?: number;
}

export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_ENTRIES = 500_000;

/** A read went over one of its bounds: which one, in `limit`. */
export class LimitError extends Error {
  override name = "LimitError";
  readonly code = "LIMIT_EXCEEDED";
  readonly limit: string;
  constructor(limit: string, message: string) {
    super(message);
    this.limit = limit;
  }
}

function cleanName(n: string): string {
  return n.replace(/^(\.\/)+/, "").replace(/^\/+/, "");
}

async function readAll(stream: AsyncIterable<Buffer>, max: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += c.length;
    if (n > max) throw new LimitError("file", `${name} is over ${max} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** Iterate the entries of an (uncompressed) tar stream. */
export async function* readTar(
  stream: Readable,
  want: (name: string) => boolean,
  limits: TarLimits = {},
): AsyncGenerator<TarEntry> {
  const maxFile = limits.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const maxEntries = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const ex = extract();
  stream.on("error", (err) => ex.destroy(err));
  stream.pipe(ex);
  let count = 0;
  try {
    for await (const entry of ex) {
      if (++count > maxEntries)
        throw new LimitError("entries", `more than ${maxEntries} entries in one layer`);
      const h = entry.header;
      const name = cleanName(h.name);
      const base = { name, type: h.type ?? "file", size: h.size ?? 0, linkname: h.linkname ?? "" };
      if (h.type === "file" && want(name)) {
        if (base.size > maxFile)
          throw new LimitError("file", `${name} is over ${maxFile} bytes (${base.size})`);
        yield { ...base, content: await readAll(entry as AsyncIterable<Buffer>, maxFile, name) };
      } else {
        entry.resume();
        yield base;
      }
    }
  } catch (err) {
    if (err instanceof LimitError) throw err;
    throw new Error(`truncated tar stream: ${(err as Error).message}`, { cause: err });
  } finally {
    stream.destroy();
    ex.destroy();
  }
}
