// "Nothing happened", shown rather than waited for: the controller has seen a report at a
// resourceVersion and has no key waiting or being reconciled. After that, counts of
// PatchJobs and stream sequence numbers say what it did.
import { waitFor } from "../../src/devenv/wait.ts";
import type { RunningController } from "../../src/controller/index.ts";

/** The controller has nothing left to do (twice in a row, 50 ms apart). */
export async function idle(ctl: RunningController, timeoutMs = 30_000): Promise<void> {
  let streak = 0;
  await waitFor(
    "the controller to have nothing left to reconcile",
    () => {
      streak = ctl.idle() ? streak + 1 : 0;
      return streak >= 2;
    },
    timeoutMs,
    50,
  );
}

/** The controller's cache holds this report at `resourceVersion` (or later), and it is idle. */
export async function observed(
  ctl: RunningController,
  key: string,
  resourceVersion: string,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(
    `the controller to see ${key} at resourceVersion ${resourceVersion}`,
    () => Number(ctl.reportStore()?.get(key)?.resourceVersion ?? 0) >= Number(resourceVersion),
    timeoutMs,
    50,
  );
  await idle(ctl, timeoutMs);
}
