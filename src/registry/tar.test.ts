import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { LimitError, readTar, type TarEntry } from "./tar.ts";
import { paxHeader, tarFile, tarOf } from "../../test/support/tar.ts";

/** A stream that hands out its bytes in small, uneven chunks (as a network would). */
function chunked(b: Buffer, size = 97): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) chunks.push(b.subarray(i, i + size));
  return Readable.from(chunks);
}

async function entries(b: Buffer, want: (n: string) => boolean = () => true): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  for await (const e of readTar(chunked(b), want)) out.push(e);
  return out;
}

test("tar - plain ustar files: names cleaned of ./ and /, content only for wanted entries", async () => {
  const got = await entries(
    tarOf(tarFile("./etc/os-release", "ID=debian\n"), tarFile("/var/lib/dpkg/status", "Package: a\n")),
    (n) => n === "var/lib/dpkg/status",
  );
  assert.deepEqual(
    got.map((e) => [e.name, e.size, e.content?.toString()]),
    [
      ["etc/os-release", 10, undefined],
      ["var/lib/dpkg/status", 11, "Package: a\n"],
    ],
  );
});

test("tar - the ustar prefix field, GNU long names (L) and pax path/size records", async () => {
  const long = "usr/share/" + "d".repeat(120) + "/file";
  const got = await entries(
    tarOf(
      tarFile("status", "in prefix", { prefix: "var/lib/dpkg" }),
      tarFile("././@LongLink", long + "\0", { type: "L" }),
      tarFile(long.slice(0, 99), "gnu long"),
      paxHeader({ path: "lib/apk/db/installed" }),
      tarFile("truncated-name", "from pax"),
    ),
  );
  assert.deepEqual(
    got.map((e) => [e.name, e.content?.toString()]),
    [
      ["var/lib/dpkg/status", "in prefix"],
      [long, "gnu long"],
      ["lib/apk/db/installed", "from pax"],
    ],
  );
});

test("tar - a base-256 size, a symlink's target, and a directory", async () => {
  const got = await entries(
    tarOf(
      tarFile("big", "x".repeat(700), { base256Size: true }),
      tarFile("link", "", { type: "2", linkname: "big" }),
      tarFile("dir/", "", { type: "5" }),
    ),
  );
  assert.deepEqual(
    got.map((e) => [e.name, e.type, e.size, e.linkname, e.content?.length]),
    [
      ["big", "file", 700, "", 700],
      ["link", "symlink", 0, "big", undefined],
      ["dir/", "directory", 0, "", undefined],
    ],
  );
});

test("tar - a stream cut inside a wanted entry is an error, not a short file", async () => {
  const whole = tarOf(tarFile("var/lib/dpkg/status", "y".repeat(2000)));
  await assert.rejects(entries(whole.subarray(0, 1024)), /truncated tar stream/);
});

test("tar - bounded: a wanted file over the limit, or too many entries, is a LimitError naming it", async () => {
  const big = tarOf(tarFile("var/lib/dpkg/status", "x".repeat(5000)));
  await assert.rejects(
    async () => {
      for await (const _ of readTar(chunked(big), () => true, { maxFileBytes: 4096 }));
    },
    (e: unknown) =>
      e instanceof LimitError &&
      e.limit === "file" &&
      /var\/lib\/dpkg\/status is over 4096 bytes/.test(e.message),
  );
  const many = tarOf(...Array.from({ length: 20 }, (_, i) => tarFile(`f${i}`, "")));
  await assert.rejects(
    async () => {
      for await (const _ of readTar(chunked(many), () => false, { maxEntries: 10 }));
    },
    (e: unknown) => e instanceof LimitError && e.limit === "entries",
  );
});

test("tar - an empty stream has no entries", async () => {
  assert.deepEqual(await entries(Buffer.alloc(0)), []);
});
