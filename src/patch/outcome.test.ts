// What copa's output means: the reason, whether to retry, and the line a user needs.
// Output lines below are copa 0.14.2's and BuildKit's, as the fault suite saw them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { classifyCopaRun } from "./outcome.ts";

const failed = (outputTail: string, exitCode = 1) =>
  classifyCopaRun({ exitCode, signal: null, durationMs: 1, outputTail, timedOut: false });

const cases: Array<{ what: string; out: string; reason: string; transient: boolean; says: RegExp }> = [
  {
    what: "a release whose suites the mirror no longer serves (apt-get update in copa's tooling image)",
    out: [
      "#7 0.412 Err:4 http://deb.debian.org/debian buster Release",
      "#7 0.412   404  Not Found [IP: 151.101.2.132 80]",
      "#7 0.530 E: The repository 'http://deb.debian.org/debian buster Release' does not have a Release file.",
      'Error: failed to solve: process "/bin/sh -c apt-get -o Acquire::Retries=3 update" did not complete successfully: exit code: 100',
    ].join("\n"),
    reason: "EndOfLife",
    transient: false,
    says: /past its end of life: the mirror no longer serves 'http:\/\/deb\.debian\.org\/debian buster'.*Rebuild the image/,
  },
  {
    what: "the push target registry down",
    out: [
      "#12 exporting to image",
      'Error: failed to solve: failed to push 127.0.0.1:33945/library/debian:bookworm-vuln-patched: failed to do request: Head "https://127.0.0.1:33945/v2/library/debian/blobs/sha256:aa": dial tcp 127.0.0.1:33945: connect: connection refused',
    ].join("\n"),
    reason: "RegistryUnreachable",
    transient: true,
    says: /a registry is unreachable: .*failed to push 127\.0\.0\.1:33945/,
  },
  {
    what: "a multi-arch platform failing, after copa's docker-socket fallback warning (not BuildKit down)",
    out: [
      'time="2026-11-29T21:05:14Z" level=warning msg="local descriptor lookup for 127.0.0.1:44437/library/debian:multi-fail-amd64 failed in docker (error: failed to connect to the docker API at unix:///var/run/docker.sock; check if the path is correct and if the daemon is running: dial unix /var/run/docker.sock: connect: no such file or directory), trying remote."',
      "Error: downloaded package liblzma5 version 5.4.1-1+deb12u2 lower than required 99.0-1 for update",
    ].join("\n"),
    reason: "PackageError",
    transient: false,
    says: /liblzma5 version 5\.4\.1-1\+deb12u2 lower than required 99\.0-1/,
  },
  {
    what: "BuildKit down",
    out: 'Error: listing workers for Build: failed to list workers: Unavailable: connection error: desc = "transport: Error while dialing: dial unix /run/buildkit/buildkitd.sock: connect: no such file or directory"',
    reason: "BuildKitUnreachable",
    transient: true,
    says: /BuildKit is unreachable/,
  },
  {
    what: "BuildKit killed mid-solve (seen in test/scale/buildkits.test.ts)",
    out: "Error: failed to solve: Unavailable: error reading from server: EOF",
    reason: "BuildKitUnreachable",
    transient: true,
    says: /BuildKit is unreachable/,
  },
  {
    what: "the archive has no version with the fix (copa checks what apt installed)",
    out: [
      "#11 1.389 Setting up liblzma5:amd64 (5.4.1-1+deb12u2) ...",
      'time="2026-11-29T18:53:06Z" level=error msg="downloaded package liblzma5 version 5.4.1-1+deb12u2 lower than required 5.4.1-1+deb12u99 for update"',
      "Error: Patch Failed",
      "  failed to solve: 1 error occurred:",
      "\t* downloaded package liblzma5 version 5.4.1-1+deb12u2 lower than required 5.4.1-1+deb12u99 for update",
      "Error: failed to solve: 1 error occurred:",
    ].join("\n"),
    reason: "PackageError",
    transient: false,
    says: /no version with the fix yet: .*downloaded package liblzma5 version 5\.4\.1-1\+deb12u2 lower than required 5\.4\.1-1\+deb12u99/,
  },
  {
    what: "apt cannot find a package",
    out: [
      "#6 1.843 Reading package lists...",
      "#6 1.901 E: Unable to locate package libfoo",
      "Error: failed to solve: 1 error occurred:",
    ].join("\n"),
    reason: "PackageError",
    transient: false,
    says: /a package update failed: #6 1\.901 E: Unable to locate package libfoo/,
  },
  {
    what: "copa's own deadline",
    out: "#4 2.183 Reading package lists...Error: Operation Timed Out\ncontext deadline exceeded",
    reason: "Timeout",
    transient: true,
    says: /copa timed out/,
  },
  {
    what: "the registry refusing credentials",
    out: "Error: failed to resolve source metadata for r/x:1: unexpected status from HEAD request: 401 Unauthorized",
    reason: "RegistryDenied",
    transient: false,
    says: /denied access/,
  },
  {
    what: "an unexplained failure",
    out: "something odd\nError: boom",
    reason: "CopaFailed",
    transient: false,
    says: /copa failed \(exit code 1\): Error: boom/,
  },
];

for (const c of cases)
  test(`outcome - ${c.what}: ${c.reason}${c.transient ? " (retried)" : ""}`, () => {
    const v = failed(c.out);
    assert.equal(v.kind, "failed");
    if (v.kind !== "failed") return;
    assert.equal(v.reason, c.reason, v.message);
    assert.equal(v.transient, c.transient);
    assert.match(v.message, c.says);
  });

test("outcome - a word ending in 'e' before a colon is not apt's 'E:' (failed to solve: ...)", () => {
  const v = failed("Error: failed to solve: something else entirely");
  assert.equal(v.kind, "failed");
  if (v.kind === "failed") assert.notEqual(v.reason, "PackageError", v.message);
});
