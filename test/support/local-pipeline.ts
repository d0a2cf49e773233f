// The patch pipeline of one namespace on the shared environment, as the integration
// tests run it: the controller in this process, a worker as a child process (the local
// executor: copa on the environment's BuildKit). Disposed of in reverse order.
import type { Env } from "../../src/devenv/index.ts";
import { connectNats } from "../../src/queue/index.ts";
import { startController } from "../../src/controller/index.ts";
import { localWorkerArgs, startCli } from "./cli.ts";

export async function localPipeline(
  env: Env,
  namespace: string,
  workerFlags: string[] = [],
): Promise<AsyncDisposable> {
  const nc = await connectNats({ url: env.natsURL, name: `${namespace}-test` });
  const ctl = await startController({
    kc: env.kubeConfig(),
    nc,
    namespaces: [namespace],
    policyNamespace: namespace,
  });
  try {
    const worker = await startCli([...localWorkerArgs(env), "--listen", "127.0.0.1:0", ...workerFlags], {
      logDir: env.dir,
      name: `${namespace}-worker`,
    });
    return {
      async [Symbol.asyncDispose]() {
        await worker.stop();
        await ctl.stop();
        await nc.close();
      },
    };
  } catch (err) {
    await ctl.stop();
    await nc.close();
    throw err;
  }
}
