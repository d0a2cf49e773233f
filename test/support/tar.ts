// Tar archives built in memory, for tests of the layer readers: ustar headers with a
// real checksum, pax records and GNU long names, so each format path can be exercised.

/** One 512-byte tar header (ustar), checksum filled in. */
export function tarHeader(
  name: string,
  size: number,
  o: { type?: string; prefix?: string; linkname?: string; base256Size?: boolean } = {},
): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, "utf8");
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  if (o.base256Size) {
    h[124] = 0x80;
    let n = size;
    for (let i = 135; i > 124; i--) {
      h[i] = n % 256;
      n = Math.floor(n / 256);
    }
  } else h.write(size.toString(8).padStart(11, "0") + "\0", 124);
  h.write("00000000000\0", 136);
  h.write(o.type ?? "0", 156);
  if (o.linkname) h.write(o.linkname, 157, 100, "utf8");
  h.write("ustar\0", 257);
  h.write("00", 263);
  if (o.prefix) h.write(o.prefix, 345, 155, "utf8");
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return h;
}

function block(content: Buffer): Buffer {
  return Buffer.concat([content, Buffer.alloc((512 - (content.length % 512)) % 512)]);
}

export function tarFile(
  name: string,
  content: string | Buffer,
  o: Parameters<typeof tarHeader>[2] = {},
): Buffer {
  const body = Buffer.from(content);
  return Buffer.concat([tarHeader(name, body.length, o), block(body)]);
}

export function paxHeader(records: Record<string, string>): Buffer {
  let text = "";
  for (const [k, v] of Object.entries(records)) {
    const rec = ` ${k}=${v}\n`;
    let len = rec.length + 1;
    while (String(len).length + rec.length !== len) len = String(len).length + rec.length;
    text += `${len}${rec}`;
  }
  return tarFile("PaxHeader", text, { type: "x" });
}

export function tarOf(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}
