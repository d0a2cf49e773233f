// The patch queue on NATS JetStream: messages that only reference a PatchJob, the stream,
// the publisher the controller uses and the consumer the workers share.
export {
  consume,
  type ConsumerOptions,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_MAX_DELIVER,
  DEFAULT_SHUTDOWN_GRACE_MS,
  type Delivery,
  ensureConsumer,
  type Handler,
  type HandlerResult,
} from "./consumer.ts";
export { BadMessageError, decodeRequest, type PatchRequest, STREAM } from "./messages.ts";
export { connectNats } from "./nats.ts";
export { JetStreamPublisher, type Publisher } from "./publisher.ts";
