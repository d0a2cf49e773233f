import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { STREAM } from "../../src/queue/index.ts";

/** Messages now in the patch stream (nothing consumes them in controller tests), and the total ever stored. */
export async function streamState(natsURL: string): Promise<{ messages: number; lastSeq: number }> {
  const nc = await connect({ servers: natsURL.split(",") });
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
  const nc = await connect({ servers: natsURL.split(",") });
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

/**
 * Every patch request now in the stream for a namespace, in order. Read message by
 * message, by sequence number, so that a gap would show.
 */
export async function streamMessages(
  natsURL: string,
  namespace: string,
): Promise<Array<{ name: string; uid: string; generation: number; msgID?: string }>> {
  const nc = await connect({ servers: natsURL.split(",") });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAM).catch(() => undefined);
    const out: Array<{ name: string; uid: string; generation: number; msgID?: string }> = [];
    if (!info || info.state.messages === 0) return out;
    const prefix = `vulnpatcher.patch.${namespace}.`;
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAM, { seq }).catch(() => undefined);
      if (!m || !m.subject.startsWith(prefix)) continue;
      const r = m.json<{ name: string; uid: string; generation: number }>();
      out.push({ ...r, msgID: m.header?.get("Nats-Msg-Id") });
    }
    return out;
  } finally {
    await nc.close();
  }
}
