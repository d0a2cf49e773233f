// The patch queue on NATS JetStream: messages that only reference a PatchJob, the stream,
// the publisher the controller uses and the consumer the workers share.
export {
  consume,
  consumerConfig,
  type ConsumerOptions,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_MAX_DELIVER,
  DEFAULT_SHUTDOWN_GRACE_MS,
  type Delivery,
  ensureConsumer,
  type Handler,
  type HandlerResult,
  retryDelay,
} from "./consumer.ts";
export {
  BadMessageError,
  CONSUMER,
  decodeRequest,
  encodeRequest,
  msgIdFor,
  type PatchRequest,
  STREAM,
  SUBJECT_PREFIX,
  subjectFor,
} from "./messages.ts";
export {
  connectNats,
  ensureStream,
  isJsError,
  JsCode,
  manager,
  type NatsOptions,
  streamConfig,
  type StreamOptions,
} from "./nats.ts";
export { isPending, JetStreamPublisher, type Publisher, type PublishResult } from "./publisher.ts";
