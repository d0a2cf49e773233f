import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { parseApkInstalled, parseDpkgStatus, readPackageDB, type BlobReader } from "./pkgdb.ts";
import { PatchError } from "../api/index.ts";
import { tarFile, tarOf } from "../../test/support/tar.ts";
import { layers } from "../../test/support/layers.ts";

const STATUS = `Package: liblzma5
Status: install ok installed
Version: 5.4.1-1+deb12u1

Package: old-thing
Status: deinstall ok config-files
Version: 1.0

Package: perl-base
Status: install ok installed
Architecture: amd64
Version: 5.36.0-7+deb12u3
Description: minimal Perl system
 a continuation line: Version: 9.9 is not a field
`;

test("dpkg - installed packages only, with their versions; continuation lines are not fields", () => {
  assert.deepEqual(
    [...parseDpkgStatus(STATUS)],
    [
      ["liblzma5", "5.4.1-1+deb12u1"],
      ["perl-base", "5.36.0-7+deb12u3"],
    ],
  );
});

test("dpkg - distroless status.d entries have no Status field: present means installed", () => {
  assert.deepEqual(
    [...parseDpkgStatus("Package: base-files\nVersion: 12.4+deb12u5\n")],
    [["base-files", "12.4+deb12u5"]],
  );
});

test("apk - P: and V: records", () => {
  const db = "C:Q1abc=\nP:musl\nV:1.1.24-r2\nA:x86_64\n\nP:busybox\nV:1.31.1-r9\n\nP:no-version\n";
  assert.deepEqual(
    [...parseApkInstalled(db)],
    [
      ["musl", "1.1.24-r2"],
      ["busybox", "1.31.1-r9"],
    ],
  );
});

const REF = { registry: "127.0.0.1:5000", repository: "unit/pkgdb" };

test("package db - the top layer that has the status file decides; lower layers are not read", async () => {
  const base = tarOf(
    tarFile("etc/debian_version", "12.15\n"),
    tarFile("var/lib/dpkg/status", STATUS),
    tarFile("etc/marker-" + Math.random(), "unique"),
  );
  const top = tarOf(
    tarFile(
      "var/lib/dpkg/status",
      STATUS.replace("5.4.1-1+deb12u1", "5.4.1-1+deb12u2") + "\n" + `x-${Math.random()}: y\n`,
    ),
  );
  const l = layers(base, top);
  const db = await readPackageDB(l.reader, REF, l.descriptors);
  assert.equal(db.format, "dpkg");
  assert.equal(db.packages.get("liblzma5"), "5.4.1-1+deb12u2", "copa's top layer wins");
  assert.deepEqual(l.reads, [l.descriptors[1]!.digest], "the base layer was not read");
  const withVersion = await readPackageDB(l.reader, REF, l.descriptors, { debianVersion: true });
  assert.equal(withVersion.debianVersion, "12.15", "asked for, it reads down to /etc/debian_version");
  assert.deepEqual(l.reads, [l.descriptors[1]!.digest, l.descriptors[0]!.digest], "each layer read once");
});

test("package db - a whiteout of the status file in an upper layer means no database", async () => {
  const l = layers(
    tarOf(tarFile("var/lib/dpkg/status", STATUS), tarFile(`n-${Math.random()}`, "")),
    tarOf(tarFile("var/lib/dpkg/.wh.status", ""), tarFile(`n-${Math.random()}`, "")),
  );
  const db = await readPackageDB(l.reader, REF, l.descriptors);
  assert.deepEqual(db, { format: "unknown", packages: new Map() });
});

test("package db - distroless status.d files merge, the upper layer's copy of a file winning", async () => {
  const l = layers(
    tarOf(
      tarFile("var/lib/dpkg/status.d/base-files", "Package: base-files\nVersion: 12.4\n"),
      tarFile("var/lib/dpkg/status.d/tzdata", "Package: tzdata\nVersion: 2024a-0+deb12u1\n"),
      tarFile(`n-${Math.random()}`, ""),
    ),
    tarOf(
      tarFile("var/lib/dpkg/status.d/tzdata", "Package: tzdata\nVersion: 2025b-0+deb12u1\n"),
      tarFile(`n-${Math.random()}`, ""),
    ),
  );
  const db = await readPackageDB(l.reader, REF, l.descriptors);
  assert.equal(db.format, "dpkg");
  assert.deepEqual(Object.fromEntries(db.packages), { "base-files": "12.4", tzdata: "2025b-0+deb12u1" });
});

test("package db - an Alpine image's apk database", async () => {
  const l = layers(
    tarOf(tarFile("lib/apk/db/installed", "P:musl\nV:1.2.5-r0\n"), tarFile(`n-${Math.random()}`, "")),
  );
  const db = await readPackageDB(l.reader, REF, l.descriptors);
  assert.equal(db.format, "apk");
  assert.equal(db.packages.get("musl"), "1.2.5-r0");
});

test("package db - a layer whose bytes do not have its digest is not used, and not cached", async () => {
  const good = tarOf(tarFile("var/lib/dpkg/status", STATUS), tarFile(`n-${Math.random()}`, ""));
  const l = layers(good);
  const forged = gzipSync(tarOf(tarFile("var/lib/dpkg/status", STATUS.replaceAll("deb12u1", "deb12u9"))));
  const lying: BlobReader = { blob: async () => Readable.from([forged]) };
  await assert.rejects(
    readPackageDB(lying, REF, l.descriptors),
    (e: unknown) =>
      e instanceof PatchError && e.reason === "BlobDigestMismatch" && /with other content/.test(e.message),
  );
  const db = await readPackageDB(l.reader, REF, l.descriptors);
  assert.equal(db.packages.get("liblzma5"), "5.4.1-1+deb12u1", "the true content, read afresh");
});

test("package db - bytes that do not even decompress: their digest decides (BlobDigestMismatch), else CorruptLayer; both permanent", async () => {
  const good = gzipSync(
    tarOf(tarFile("var/lib/dpkg/status", STATUS), tarFile(`c-${Math.random()}`, "x".repeat(4096))),
  );
  const digest = "sha256:" + createHash("sha256").update(good).digest("hex");
  const descriptor = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size: good.length };
  // One byte flipped near the end (the gzip check fails): other bytes than the digest's.
  const flipped = Buffer.from(good);
  flipped[flipped.length - 6]! ^= 0xff;
  await assert.rejects(
    readPackageDB({ blob: async () => Readable.from([flipped]) }, REF, [descriptor]),
    (e: unknown) => e instanceof PatchError && e.reason === "BlobDigestMismatch" && !e.transient,
  );
  // Bytes that are what the digest says, and still not a gzip stream.
  const broken = Buffer.from("this is not gzip at all");
  const brokenDigest = "sha256:" + createHash("sha256").update(broken).digest("hex");
  await assert.rejects(
    readPackageDB({ blob: async () => Readable.from([broken]) }, REF, [
      { ...descriptor, digest: brokenDigest, size: broken.length },
    ]),
    (e: unknown) =>
      e instanceof PatchError &&
      e.reason === "CorruptLayer" &&
      /right digest but cannot be read/.test(e.message),
  );
});

test("package db - bounded reads: a gzip bomb, a huge status file, a layer over its size fail with ImageTooLarge", async () => {
  const bomb = tarOf(
    tarFile(`zeros-${Math.random()}`, Buffer.alloc(40 * 1024 * 1024)),
    tarFile("var/lib/dpkg/status", STATUS),
  );
  const l1 = layers(bomb);
  assert.ok(
    l1.descriptors[0]!.size < 200_000,
    `the bomb is small compressed (${l1.descriptors[0]!.size} bytes)`,
  );
  const rows: Array<[string, ReturnType<typeof layers>, Parameters<typeof readPackageDB>[3], RegExp]> = [
    [
      "gzip bomb",
      l1,
      { limits: { maxUncompressedBytes: 8 * 1024 * 1024 } },
      /\(uncompressed\).* over 8388608 bytes/,
    ],
    [
      "huge status file",
      layers(
        tarOf(
          tarFile("var/lib/dpkg/status", STATUS + "x".repeat(100_000)),
          tarFile(`n-${Math.random()}`, ""),
        ),
      ),
      { limits: { maxFileBytes: 64 * 1024 } },
      /\(file\): var\/lib\/dpkg\/status is over 65536 bytes/,
    ],
    [
      "layer over its size (the descriptor says 100 bytes: the bytes are counted as they come)",
      ((l) => ({ ...l, descriptors: l.descriptors.map((d) => ({ ...d, size: 100 })) }))(
        layers(
          tarOf(tarFile("var/lib/dpkg/status", STATUS), tarFile(`n-${Math.random()}`, randomBytes(50_000))),
        ),
      ),
      { limits: { maxLayerBytes: 1024 } },
      /\(layer\): layer sha256:[0-9a-f]+ is over 1024 bytes/,
    ],
  ];
  for (const [what, l, opts, says] of rows)
    await assert.rejects(
      readPackageDB(l.reader, REF, l.descriptors, opts),
      (e: unknown) => e instanceof PatchError && e.reason === "ImageTooLarge" && says.test(e.message),
      what,
    );
});
