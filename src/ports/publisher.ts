/**
 * The publisher port: hands committed outbox messages to a broker. The Dapr publisher implements
 * it; so can any other transport (RabbitMQ, Kafka, ...) by implementing these two methods.
 */

/** One committed event, as the publisher receives it. */
export interface OutboxMessage {
  /** The event id. A subscriber must see this id on every attempt (it is the de-duplication key). */
  readonly id: string;
  readonly topic: string;
  readonly pubsubName: string;
  readonly eventTypeName: string;
  /** The event serialised as JSON (the message body). */
  readonly content: string;
  /** W3C trace context of the request that published the event, when there was one. */
  readonly traceparent?: string | null;
  readonly tracestate?: string | null;
  /** Epoch milliseconds. */
  readonly creationTime: number;
  /**
   * The ordering key (`bus.publish(event, { orderingKey })`), or null/undefined for an unkeyed
   * event. Events of one key on one pubsub and topic are published one at a time, in sequence.
   */
  readonly orderingKey?: string | null;
  /**
   * A keyed event's place in its key's order (1, 2, ...), given by the store's insert in the
   * writing transaction; null/undefined for an unkeyed event.
   */
  sequence?: number | null;
  /**
   * Set by the store's insert on a keyed event that must wait for an earlier event of its key:
   * it is not published by its committer, and goes out once the earlier ones have.
   */
  waiting?: boolean;
}

/** What a bulk publish reports: the entries that were NOT published. All others were. */
export interface BulkPublishResult {
  readonly failed: ReadonlyArray<{ readonly id: string; readonly error: Error }>;
}

export interface Publisher {
  /** Publishes one message. Resolves only when the broker accepted it; rejects otherwise. */
  publish(message: OutboxMessage): Promise<void>;
  /**
   * Optional: publishes messages of one pubsub and topic in one call. Must report partial failures
   * entry by entry; rejects only when nothing is known to have been published.
   */
  publishBulk?(messages: readonly OutboxMessage[]): Promise<BulkPublishResult>;
  /** Optional: the pubsub name used for events that do not carry one. */
  readonly pubsubName?: string;
  /**
   * Optional: asks the broker (the sidecar) whether it is ready. Resolves when it is; rejects,
   * saying why, when it answered otherwise or not within `timeoutMs`. `outbox.health()` reports it.
   */
  checkHealth?(timeoutMs: number): Promise<void>;
  /** Optional: releases connections. Called by `outbox.close()`. */
  close?(): Promise<void>;
}
