/**
 * The public types of the subscription router: CloudEvents as the handler sees them, the
 * handler's context, and the per-topic options.
 */
import type { IncomingHttpHeaders } from 'node:http';

/**
 * A CloudEvent as daprd delivers it: the spec's attributes plus Dapr's extensions (`topic`,
 * `pubsubname`, `traceparent`, ...). Unknown extensions are kept.
 */
export interface CloudEvent<T = unknown> {
  id: string;
  source: string;
  type: string;
  specversion: string;
  datacontenttype?: string;
  dataschema?: string;
  subject?: string;
  time?: string;
  topic?: string;
  pubsubname?: string;
  traceid?: string;
  traceparent?: string;
  tracestate?: string;
  expiration?: string;
  data?: T;
  data_base64?: string;
  [extension: string]: unknown;
}

/** What a handler receives next to the event's data. */
export interface DeliveryContext {
  /** The whole CloudEvent (for a binary-mode delivery, built from the `ce-*` headers). */
  event: CloudEvent;
  /** The CloudEvent id: the event's own id when published through the outbox, stable across retries. */
  id: string;
  /** The topic and pubsub of the subscription that received it. */
  topic: string;
  pubsubName: string;
  /** The route (path) the delivery came in on: the topic's route, or a rule's path. */
  route: string;
  /** The HTTP request's headers (for a bulk entry: those of the bulk request). */
  headers: IncomingHttpHeaders;
  /**
   * With the inbox on: the transaction the handler runs in (a Sequelize `Transaction` with the
   * Sequelize stores). Model calls inside the handler join it on their own; pass it explicitly
   * to raw queries (`{ transaction: ctx.transaction as Transaction }`).
   */
  transaction: unknown;
  /** With the inbox on: the consumer name the event id is recorded under. */
  consumer: string | undefined;
  /** The request body as received, when the router read it itself (single deliveries). */
  rawBody?: Buffer;
  /** For an entry of a bulk delivery: its entry id and metadata. */
  bulk?: { entryId: string; metadata: Record<string, unknown> };
}

/**
 * A topic handler. Resolving (with anything) answers SUCCESS. Returning `'RETRY'` or throwing
 * answers RETRY; returning `'DROP'` or throwing `DropError` answers DROP. With the inbox on, every
 * outcome but SUCCESS rolls the handler's transaction back.
 */
export type TopicHandler<T = any> = (data: T, ctx: DeliveryContext) => unknown;

/**
 * A validation hook: a function (returning false or throwing rejects), or a schema object with
 * `parse(data)` (zod style: returns the value to use, throws to reject), `safeParse(data)`
 * (`{ success, data, error }`) or `validate(data)` (joi style: `{ value, error }`). A rejected
 * message can never succeed: it is answered DROP.
 */
export type TopicValidator =
  /** Returns false (or throws) to DROP, 'RETRY' when it cannot decide now, anything else to accept. */
  | ((data: unknown, ctx: DeliveryContext) => unknown)
  | { parse(data: unknown): unknown }
  | { safeParse(data: unknown): { success: boolean; data?: unknown; error?: unknown } }
  | { validate(data: unknown): unknown };

/** A routing rule (Dapr v2 routes): events whose CEL `match` is true go to `path`. */
export interface TopicRule {
  /** A CEL expression over `event`, e.g. `event.type == "widget"`. */
  match: string;
  /** Where matching events are delivered. Default `<topic route>/rules/<index>`. */
  path?: string;
  /** Handles the events of this rule. Default: the topic's handler. */
  handler?: TopicHandler;
}

/** Options of `router.topic()`. */
export interface TopicOptions {
  /** The route daprd delivers to. Default `<routePrefix>/<pubsub>/<topic>` (each name percent-encoded). */
  route?: string;
  /** Where daprd sends messages answered DROP or out of retries. Default: none. */
  deadLetterTopic?: string;
  /** Subscription metadata. Values are sent as strings (numbers and booleans are converted). */
  metadata?: Record<string, string | number | boolean>;
  /**
   * Subscribe with `rawPayload: "true"`: the handler gets the broker's bytes as a Buffer. Note
   * that daprd gives such deliveries a new id each time, so the inbox cannot spot redeliveries.
   */
  rawPayload?: boolean;
  /** v2 routing rules, tried in order; unmatched events go to the topic's route. */
  rules?: TopicRule[];
  /** Bulk subscribe. `true` uses Dapr's defaults (100 messages, 1000 ms). */
  bulk?: true | { maxMessagesCount?: number; maxAwaitDurationMs?: number };
  /** Checks the data before the handler runs; a rejection answers DROP. */
  validate?: TopicValidator;
  /** The inbox consumer name of this topic. Default: see SubscriptionRouterOptions.consumer. */
  consumer?: string;
  /**
   * With the inbox: how long, in seconds, one of this topic's ordering keys waits for a missing
   * event before it skips it. Default: the router's `orderingGapTimeout` (600).
   */
  orderingGapTimeout?: number;
  /** With the inbox: where this topic's consumer starts in a key it has never handled. Default: the router's `orderingStart` ('beginning'). */
  orderingStart?: 'beginning' | 'first-delivered';
}

/** One item of `GET /dapr/subscribe`, exactly as daprd reads it. */
export interface DaprSubscription {
  pubsubname: string;
  topic: string;
  route: string;
  routes?: { rules: Array<{ match: string; path: string }>; default: string };
  metadata?: Record<string, string>;
  deadLetterTopic?: string;
  bulkSubscribe?: { enabled: true; maxMessagesCount: number; maxAwaitDurationMs: number };
}
