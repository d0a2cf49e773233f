// A streaming tar reader (ustar, pax and GNU long names) that hands back the content
// of the entries a caller asks for and skips the rest, so a large layer is read once
// without being held in memory.
import type { Readable } from "node:stream";

export interface TarEntry {
  /** Path without a leading "./" or "/". */
  name: string;
  /** "0" file, "5" dir, "2" symlink, ... */
  type: string;
  size: number;
  linkname: string;
  /** Present when `want(name)` was true. */
  content?: Buffer;
}

function cstr(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const z = s.indexOf(0);
  return s.subarray(0, z < 0 ? s.length : z).toString("utf8");
}

function octal(b: Buffer, start: number, len: number): number {
  const field = b.subarray(start, start + len);
  if (field[0]! & 0x80) {
    // base-256 (GNU) for big sizes
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const s = cstr(b, start, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function cleanName(n: string): string {
  return n.replace(/^(\.\/)+/, "").replace(/^\/+/, "");
}

function paxPath(content: Buffer): { path?: string; linkpath?: string; size?: number } {
  const out: { path?: string; linkpath?: string; size?: number } = {};
  let i = 0;
  while (i < content.length) {
    const sp = content.indexOf(0x20, i);
    if (sp < 0) break;
    const len = parseInt(content.subarray(i, sp).toString(), 10);
    if (!len) break;
    const rec = content.subarray(sp + 1, i + len - 1).toString("utf8");
    const eq = rec.indexOf("=");
    const k = rec.slice(0, eq);
    const v = rec.slice(eq + 1);
    if (k === "path") out.path = v;
    else if (k === "linkpath") out.linkpath = v;
    else if (k === "size") out.size = Number(v);
    i += len;
  }
  return out;
}

/** Iterate the entries of an (uncompressed) tar stream. */
export async function* readTar(stream: Readable, want: (name: string) => boolean): AsyncGenerator<TarEntry> {
  let buf: Buffer = Buffer.alloc(0);
  let pending: { path?: string; linkpath?: string; size?: number } = {};
  const iter = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let done = false;
  async function fill(n: number): Promise<boolean> {
    while (buf.length < n && !done) {
      const r = await iter.next();
      if (r.done) done = true;
      else buf = buf.length ? Buffer.concat([buf, r.value]) : r.value;
    }
    return buf.length >= n;
  }
  async function skip(n: number): Promise<void> {
    while (n > 0) {
      if (buf.length === 0 && !(await fill(1))) return;
      const k = Math.min(n, buf.length);
      buf = buf.subarray(k);
      n -= k;
    }
  }
  async function take(n: number): Promise<Buffer> {
    if (!(await fill(n))) throw new Error("truncated tar stream");
    const out = Buffer.from(buf.subarray(0, n));
    buf = buf.subarray(n);
    return out;
  }
  try {
    for (;;) {
      if (!(await fill(512))) return;
      const h = buf.subarray(0, 512);
      if (h.every((x) => x === 0)) return;
      buf = buf.subarray(512);
      const type = String.fromCharCode(h[156]! || 0x30);
      let size = octal(h, 124, 12);
      const prefix = cstr(h, 345, 155);
      let name = cstr(h, 0, 100);
      if (prefix && cstr(h, 257, 6).startsWith("ustar")) name = `${prefix}/${name}`;
      let linkname = cstr(h, 157, 100);
      const padded = Math.ceil(size / 512) * 512;
      if (type === "x" || type === "g" || type === "L" || type === "K") {
        const content = await take(size);
        await skip(padded - size);
        if (type === "x") pending = { ...pending, ...paxPath(content) };
        if (type === "L") pending.path = cstr(content, 0, content.length);
        if (type === "K") pending.linkpath = cstr(content, 0, content.length);
        continue;
      }
      if (pending.path) name = pending.path;
      if (pending.linkpath) linkname = pending.linkpath;
      if (pending.size !== undefined) size = pending.size;
      pending = {};
      const entryPadded = Math.ceil(size / 512) * 512;
      const clean = cleanName(name);
      if (want(clean) && (type === "0" || type === "\0" || type === "7")) {
        const content = await take(size);
        await skip(entryPadded - size);
        yield { name: clean, type, size, linkname, content };
      } else {
        await skip(entryPadded);
        yield { name: clean, type, size, linkname };
      }
    }
  } finally {
    stream.destroy();
  }
}
