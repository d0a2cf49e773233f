import { test } from "node:test";
import assert from "node:assert/strict";
import type { KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Executor } from "../patch/index.ts";
import type { RegistryClient } from "../registry/index.ts";
import {
  DEFAULT_WORKER_CONCURRENCY,
  WorkerOptionsError,
  parseWorkerOptions,
  type WorkerOptions,
} from "./manager.ts";

const base: WorkerOptions = {
  kc: {} as KubeConfig,
  nc: {} as NatsConnection,
  executor: {} as Executor,
  registry: {} as RegistryClient,
  buildkitAddr: "unix:///run/buildkit/buildkitd.sock",
  identity: "w-1",
};

test("worker options - defaults filled in, bad values named", () => {
  assert.equal(parseWorkerOptions(base).consumer.concurrency, DEFAULT_WORKER_CONCURRENCY);
  assert.equal(parseWorkerOptions({ ...base, consumer: { concurrency: 5 } }).consumer.concurrency, 5);
  const rows: Array<[Partial<WorkerOptions>, RegExp]> = [
    [{ buildkitAddr: "" }, /buildkitAddr is required/],
    [{ buildkitAddr: "buildkit:1234" }, /buildkitAddr must be unix:\/\/ or tcp:\/\//],
    [{ identity: "" }, /identity is required/],
    [{ consumer: { maxDeliver: 0 } }, /consumer\.maxDeliver must be a positive number/],
    [{ consumer: { ackWaitMs: -1 } }, /consumer\.ackWaitMs/],
  ];
  for (const [o, re] of rows)
    assert.throws(
      () => parseWorkerOptions({ ...base, ...o }),
      (e: unknown) => e instanceof WorkerOptionsError && re.test(e.message),
      String(re),
    );
});
