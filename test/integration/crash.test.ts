// A worker stopped in the middle of a patch, killed (SIGKILL: its copa dies with it,
// JetStream redelivers after ack_wait) or asked (SIGTERM: after its grace its copa is
// stopped and the request goes back to the queue at once): the other worker finishes
// it, and the PatchJob ends with exactly one patched image in the registry.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { installGrant, namespaces, ownImage, testEnv } from "../support/shared.ts";
import { pushVariant } from "../../src/devenv/variants.ts";
import { imageSecurityUpdates } from "../../src/devenv/honest-report.ts";
import { createPatchJob, manualSpec, waitForPhase, getPatchJob } from "../../test/support/patchjobs.ts";
import { startCli, localWorkerArgs, type CliProcess } from "../../test/support/cli.ts";
import { waitFor } from "../../src/devenv/wait.ts";
import { parseImageRef } from "../../src/api/index.ts";
import { RegistryClient } from "../../src/registry/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController } from "../../src/controller/index.ts";
import { reportFault } from "../../test/support/faults.ts";

const run = promisify(execFile);

async function manifestRevisions(registryData: string, repository: string): Promise<number> {
  const dir = join(
    registryData,
    "docker/registry/v2/repositories",
    repository,
    "_manifests/revisions/sha256",
  );
  return (await readdir(dir).catch(() => [])).length;
}

async function copaProcessesFor(tag: string): Promise<number> {
  const { stdout } = await run("ps", ["-eo", "args"]);
  return stdout.split("\n").filter((l) => /(^|\/)copa /.test(l) && l.includes(tag)).length;
}

/**
 * A PatchJob patched by two workers; the one that claims it is stopped with `how` while
 * its copa runs. The other must finish it, with exactly one image pushed.
 */
async function stoppedMidPatch(t: TestContext, how: "SIGKILL" | "SIGTERM") {
  await using env = await testEnv();
  const kc = env.kubeConfig();
  const ns = (await namespaces(env, how === "SIGKILL" ? "crash" : "sigterm"))[
    how === "SIGKILL" ? "crash" : "sigterm"
  ]!;
  const repo = `${ns}/debian`;
  const own = await ownImage(env, repo);
  // A layer of this run's own on top: no BuildKit cache from another file's patch of the
  // same image makes copa finish before the stop lands.
  const tag = `${how.toLowerCase()}-${Date.now()}`;
  const digest = await pushVariant(env.registryHost, repo, "bookworm-vuln", tag, tag);
  const image = { ...own, ref: `${env.registryHost}/${repo}:${tag}`, digest };
  await installGrant(env, ns, "*"); // a PatchJob by hand of an image no report names
  const registry = new RegistryClient();
  const updates = await imageSecurityUpdates(image.ref, ["liblzma5", "libpcre2-8-0", "perl-base"]);
  const nc = await connectNats({ url: env.natsURL, name: "crash-test" });
  const ctl = await startController({ kc, nc, namespaces: [ns], policyNamespace: ns });
  const workers: Record<string, CliProcess> = {};
  try {
    for (const id of ["worker-a", "worker-b"]) {
      workers[id] = await startCli(
        [
          ...localWorkerArgs(env),
          "--identity",
          id,
          "--concurrency",
          "1",
          "--ack-wait",
          "8s",
          "--shutdown-grace",
          "1s",
          "--listen",
          "127.0.0.1:0",
        ],
        { logDir: env.dir, name: `${ns}-${id}` },
      );
    }
    const before = await manifestRevisions(env.registry!.dataDir, repo);
    await createPatchJob(
      kc,
      ns,
      "crash",
      manualSpec(image.ref, image.digest, {
        os: { type: "debian", version: "12" },
        updates,
        target: { tagSuffix: "-crash" },
      }),
    );
    const running = await waitFor(
      "Running",
      async () => {
        const pj = await getPatchJob(kc, ns, "crash");
        return pj.status?.phase === "Running" && pj.status.worker ? pj : undefined;
      },
      60_000,
      100,
    );
    const victim = running.status!.worker!;
    const survivor = victim === "worker-a" ? "worker-b" : "worker-a";
    const copa = () => copaProcessesFor(`${repo}:${tag}-crash`);
    await waitFor("copa to run", async () => (await copa()) > 0 || undefined, 30_000, 100);
    const t0 = Date.now();
    workers[victim]!.child.kill(how);
    const code = await workers[victim]!.exited;
    const stopMs = Date.now() - t0;
    if (how === "SIGTERM") {
      assert.equal(code, 0, "a clean exit");
      assert.match(
        await readFile(workers[victim]!.logFile, "utf8"),
        /stopping: 1 patches in flight get 1000 ms/,
      );
      assert.match(await readFile(workers[victim]!.logFile, "utf8"), /the request goes back to the queue/);
    }
    await waitFor(
      "the stopped worker's copa to be gone",
      async () => (await copa()) === 0 || undefined,
      10_000,
      100,
    );

    const pj = await waitForPhase(kc, ns, "crash", ["Succeeded", "Failed", "NoOp"], 300_000);
    assert.equal(pj.status?.phase, "Succeeded", pj.status?.message);
    assert.equal(pj.status?.worker, survivor);
    assert.equal(pj.status?.attempts, 2);
    const patched = await registry.manifestFor(parseImageRef(`${env.registryHost}/${repo}:${tag}-crash`));
    assert.equal(patched?.digest, pj.status?.patchedImage?.digest);
    const pushed = (await manifestRevisions(env.registry!.dataDir, repo)) - before;
    assert.equal(pushed, 1, "exactly one image pushed");
    reportFault(t, {
      fault: how === "SIGKILL" ? "worker-sigkill-mid-patch" : "worker-sigterm-mid-patch",
      injected: `${how} to ${victim} while its copa ran`,
      expected:
        how === "SIGKILL"
          ? "its copa dies with it; redelivered to the other worker; Succeeded; exactly one image pushed"
          : "it exits after its grace, its copa stopped, the request back on the queue; the other worker: Succeeded; exactly one image pushed",
      observed: `stopped in ${stopMs} ms (exit ${code}); copa gone; ${pj.status?.phase} by ${pj.status?.worker} after ${pj.status?.attempts} attempts; ${pushed} image pushed`,
    });
  } finally {
    for (const w of Object.values(workers)) await w.stop();
    await ctl.stop();
    await nc.close();
  }
}

test("worker crash - SIGKILL mid-patch: redelivered to the other worker, exactly one patched image", (t) =>
  stoppedMidPatch(t, "SIGKILL"));

test("worker stop - SIGTERM mid-patch: after its grace the request goes back to the queue; the other worker finishes it, exactly one patched image", (t) =>
  stoppedMidPatch(t, "SIGTERM"));
