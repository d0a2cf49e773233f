import { test } from "node:test";
import assert from "node:assert/strict";
import { isLibraryFile, libraryVersion, matchesLocation } from "./library-files.ts";
import { readLibraries } from "./pkgdb.ts";
import { tarFile, tarOf } from "../../test/support/tar.ts";
import { layers } from "../../test/support/layers.ts";

const SITE = "usr/local/lib/python3.11/dist-packages";
const META = (name: string, v: string) =>
  `Metadata-Version: 2.1\nName: ${name}\nVersion: ${v}\n\nVersion: 9.9.9 in the description is not the version\n`;
const PKG = (v: string) => JSON.stringify({ name: "minimist", version: v });

test("library files - package.json under node_modules (scoped too) and dist-info METADATA, nothing else", () => {
  assert.ok(isLibraryFile("app/node_modules/minimist/package.json"));
  assert.ok(isLibraryFile("app/node_modules/@types/node/package.json"));
  assert.ok(isLibraryFile("node_modules/a/node_modules/b/package.json"));
  assert.ok(isLibraryFile(`${SITE}/urllib3-1.26.4.dist-info/METADATA`));
  assert.ok(!isLibraryFile("app/package.json"));
  assert.ok(!isLibraryFile("app/node_modules/minimist/lib/package.json"));
  assert.ok(!isLibraryFile(`${SITE}/urllib3-1.26.4.dist-info/RECORD`));
});

test("library files - the version from the header of METADATA, from package.json; broken files have none", () => {
  assert.equal(libraryVersion("x.dist-info/METADATA", Buffer.from(META("urllib3", "1.26.4"))), "1.26.4");
  assert.equal(libraryVersion("node_modules/m/package.json", Buffer.from(PKG("1.2.5"))), "1.2.5");
  assert.equal(libraryVersion("node_modules/m/package.json", Buffer.from("{not json")), undefined);
  assert.equal(libraryVersion("node_modules/m/package.json", Buffer.from('{"version":7}')), undefined);
  assert.equal(libraryVersion("x.dist-info/METADATA", Buffer.from("Name: x\n\nVersion: 1.0\n")), undefined);
});

test("library files - a METADATA matches by site directory and normalised name, whatever its version", () => {
  const loc = { type: "python-pkg", name: "Foo.Bar", path: `${SITE}/foo_bar-1.0.dist-info/METADATA` };
  assert.ok(matchesLocation(`${SITE}/foo_bar-1.1.dist-info/METADATA`, loc));
  assert.ok(!matchesLocation(`usr/lib/python3/dist-packages/foo_bar-1.1.dist-info/METADATA`, loc));
  assert.ok(!matchesLocation(`${SITE}/foo_barx-1.1.dist-info/METADATA`, loc));
  assert.ok(
    matchesLocation("any/where/foo_bar-2.0.dist-info/METADATA", { type: "python-pkg", name: "foo-bar" }),
  );
  const node = { type: "node-pkg", name: "minimist", path: "app/node_modules/minimist/package.json" };
  assert.ok(matchesLocation("app/node_modules/minimist/package.json", node));
  assert.ok(!matchesLocation("other/node_modules/minimist/package.json", node));
});

test("readLibraries - the merged filesystem: an update's new dist-info over a whiteout of the old one", async () => {
  const base = tarOf(
    tarFile(`${SITE}/urllib3-1.26.4.dist-info/METADATA`, META("urllib3", "1.26.4")),
    tarFile("app/node_modules/minimist/package.json", PKG("1.2.5")),
    tarFile("app/node_modules/gone/package.json", PKG("0.1.0")),
  );
  const top = tarOf(
    tarFile(`${SITE}/.wh.urllib3-1.26.4.dist-info`, ""),
    tarFile(`${SITE}/urllib3-1.26.5.dist-info/METADATA`, META("urllib3", "1.26.5")),
    tarFile("app/node_modules/minimist/package.json", PKG("1.2.6")),
    tarFile("app/node_modules/.wh..wh..opq", ""),
    tarFile("app/node_modules/minimist/package.json.keep", "x"),
  );
  const ref = { registry: "127.0.0.1:5000", repository: "unit/libraries" };
  const wanted = [
    { type: "python-pkg", name: "urllib3", path: `${SITE}/urllib3-1.26.4.dist-info/METADATA` },
    { type: "node-pkg", name: "minimist", path: "app/node_modules/minimist/package.json" },
    { type: "node-pkg", name: "gone", path: "app/node_modules/gone/package.json" },
  ];
  const one = layers(base);
  assert.deepEqual(await readLibraries(one.reader, ref, one.descriptors, wanted), [
    ["1.26.4"],
    ["1.2.5"],
    ["0.1.0"],
  ]);
  const two = layers(base, top);
  // The opaque node_modules hides the base's packages; the top layer's own minimist stays.
  assert.deepEqual(await readLibraries(two.reader, ref, two.descriptors, wanted), [
    ["1.26.5"],
    ["1.2.6"],
    [],
  ]);
});

test("readLibraries - an upper package.json without a readable version still hides the one below; a node path must name the package", async () => {
  const ref = { registry: "127.0.0.1:5000", repository: "unit/libraries-hide" };
  const l = layers(
    tarOf(tarFile("srv/node_modules/left-pad/package.json", PKG("1.0.0"))),
    tarOf(tarFile("srv/node_modules/left-pad/package.json", "{broken")),
  );
  assert.deepEqual(
    await readLibraries(l.reader, ref, l.descriptors, [
      { type: "node-pkg", name: "left-pad", path: "srv/node_modules/left-pad/package.json" },
    ]),
    [[]],
  );
  assert.ok(
    !matchesLocation("app/node_modules/minimist/package.json", {
      type: "node-pkg",
      name: "evil",
      path: "app/node_modules/minimist/package.json",
    }),
  );
});
