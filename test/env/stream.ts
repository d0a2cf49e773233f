import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { STREAM } from "../../src/queue/messages.ts";

/** Messages now in the patch stream (nothing consumes them in controller tests), and the total ever stored. */
export async function streamState(natsURL: string): Promise<{ messages: number; lastSeq: number }> {
  const nc = await connect({ servers: natsURL });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAM).catch(() => undefined);
    return { messages: info?.state.messages ?? 0, lastSeq: info?.state.last_seq ?? 0 };
  } finally {
    await nc.close();
  }
}

/** Messages in the stream per subject, for subjects under `vulnpatcher.patch.<namespace>.`. */
export async function messagesIn(natsURL: string, namespace: string): Promise<number> {
  const nc = await connect({ servers: natsURL });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams
      .info(STREAM, { subjects_filter: `vulnpatcher.patch.${namespace}.>` })
      .catch(() => undefined);
    return Object.values(info?.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  } finally {
    await nc.close();
  }
}
