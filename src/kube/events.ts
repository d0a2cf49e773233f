// Kubernetes Events for what a human should see (kubectl describe pj). Best effort:
// an event that cannot be written is logged, never an error for the caller.
import { CoreV1Api, type KubeConfig, type V1ObjectReference } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";

import { type Logger, silentLogger } from "../util/index.ts";
import { apiMessage } from "./errors.ts";

export interface EventRecorder {
  normal(obj: InvolvedObject, reason: string, message: string): void;
  warning(obj: InvolvedObject, reason: string, message: string): void;
}

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export function eventRecorder(kc: KubeConfig, component: string, log: Logger = silentLogger): EventRecorder {
  const api = kc.makeApiClient(CoreV1Api);
  const emit = (type: "Normal" | "Warning", obj: InvolvedObject, reason: string, message: string) => {
    const ns = obj.metadata.namespace ?? "default";
    const now = new Date();
    const involved: V1ObjectReference = {
      apiVersion: obj.apiVersion,
      kind: obj.kind,
      name: obj.metadata.name,
      namespace: ns,
      uid: obj.metadata.uid,
    };
    void api
      .createNamespacedEvent({
        namespace: ns,
        body: {
          metadata: {
            name: `${obj.metadata.name.slice(0, 200)}.${randomBytes(8).toString("hex")}`,
            namespace: ns,
          },
          involvedObject: involved,
          reason,
          message: message.slice(0, 1024),
          type,
          source: { component },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          reportingComponent: component,
        },
      })
      .catch((err: unknown) => log.warn({ err: apiMessage(err), reason }, "could not record event"));
  };
  return {
    normal: (o, r, m) => emit("Normal", o, r, m),
    warning: (o, r, m) => emit("Warning", o, r, m),
  };
}
