// End of life (issue 25): the table's verdict at a date, and apt's words for a release
// whose suites are gone (as deb.debian.org answers for buster, seen here 2026-12-01).
import { test } from "node:test";
import assert from "node:assert/strict";
import { endOfLife, goneSuite } from "./eol.ts";

const NOW = new Date("2026-12-01T00:00:00Z");

test("eol - releases past their end by the date; supported ones and unknown families are not", () => {
  assert.match(
    endOfLife({ type: "debian", version: "10.13" }, NOW)!.message,
    /debian 10 \(buster\) is past its end of life \(2024-06-30\).*Rebuild the image on Debian 12/,
  );
  assert.equal(
    endOfLife({ type: "debian", version: "11.11" }, NOW)?.since,
    "2026-08-31",
    "bullseye's LTS ended 2026-08-31",
  );
  assert.equal(
    endOfLife({ type: "debian", version: "11.11" }, new Date("2026-08-31T12:00:00Z")),
    undefined,
    "the last day still counts",
  );
  assert.equal(endOfLife({ type: "debian", version: "12.15" }, NOW), undefined);
  assert.equal(endOfLife({ type: "debian", version: "7.11" }, NOW)?.since, "long ago");
  assert.equal(endOfLife({ type: "alpine", version: "3.11.3" }, NOW)?.since, "long ago");
  assert.equal(endOfLife({ type: "alpine", version: "3.20.3" }, NOW)?.since, "2026-04-01");
  assert.equal(endOfLife({ type: "alpine", version: "3.22.1" }, NOW), undefined);
  assert.equal(endOfLife({ type: "ubuntu", version: "20.04" }, NOW)?.release, "ubuntu 20.04 (focal)");
  assert.equal(endOfLife({ type: "ubuntu", version: "24.04" }, NOW), undefined);
  assert.equal(
    endOfLife({ type: "azurelinux", version: "3.0" }, NOW),
    undefined,
    "not in the table: not called EOL",
  );
  assert.equal(endOfLife(undefined, NOW), undefined);
});

test("eol - apt's error for a suite the mirror no longer serves", () => {
  const apt = [
    "#7 0.412 Err:4 http://deb.debian.org/debian buster Release",
    "#7 0.412   404  Not Found [IP: 151.101.2.132 80]",
    "#7 0.530 E: The repository 'http://deb.debian.org/debian buster Release' does not have a Release file.",
  ].join("\n");
  assert.equal(goneSuite(apt), "http://deb.debian.org/debian buster");
  assert.equal(goneSuite("E: Unable to locate package libfoo"), undefined);
});
