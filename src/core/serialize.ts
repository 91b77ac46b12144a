import { EventValidationError } from '../errors';
import type { OutboxMessage } from '../ports/publisher';
import { eventTypeName } from './integration-event';
import { MAX_PUBSUB_NAME_LENGTH } from './options';

/** Per-call options of `bus.publish()`. */
export interface PublishOptions {
  /** Pubsub component for this event, at most 255 characters. Default: the outbox's `pubsubName`. */
  pubsubName?: string;
  /**
   * An explicit transaction to join (a Sequelize Transaction). The event is written in it and
   * dispatched after it commits.
   */
  transaction?: unknown;
  /** W3C trace context to pass on. Default: the request's, inside the middleware. */
  traceparent?: string;
  tracestate?: string;
  /**
   * Keeps this event in order with the other events of the same key on its pubsub and topic (an
   * aggregate's id, say): they are published one at a time in the order their transactions
   * committed, and a router with the inbox on hands them to the handler in that order. 1 to 191
   * characters (a number is taken as its decimal text). Default: the event's own `orderingKey`
   * (a field or a getter), or none.
   */
  orderingKey?: string | number | bigint;
}

/** The longest ordering key, characters (the key columns' size). */
export const MAX_ORDERING_KEY_LENGTH = 191;

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * Checks an event and turns it into the message stored and published. Throws
 * EventValidationError (and writes nothing) for an event that could never be delivered.
 */
export function toOutboxMessage(
  event: unknown,
  defaults: { pubsubName: string; maxEventBytes: number; now: number },
  options: PublishOptions = {},
  trace?: { traceparent?: string; tracestate?: string },
): OutboxMessage {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw new EventValidationError(`an event must be an object, got ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}`);
  }
  const e = event as Record<string, unknown>;
  const topic = e.topic;
  if (typeof topic !== 'string' || topic.trim() === '') {
    throw new EventValidationError('the event has no topic (a non-empty string)', { eventId: typeof e.id === 'string' ? e.id : undefined });
  }
  if (topic.length > 255) throw new EventValidationError(`the topic is ${topic.length} characters long; at most 255`, { topic: topic.slice(0, 40) });
  const badTopic = unstorable(topic);
  if (badTopic) throw new EventValidationError(`the topic ${badTopic}`, { topic: JSON.stringify(topic).slice(1, -1).slice(0, 40) });
  const id = e.id;
  if (typeof id !== 'string' || id.length === 0 || id.length > 64) {
    throw new EventValidationError('the event id must be a string of 1 to 64 characters', { topic });
  }
  const badId = unstorable(id);
  if (badId) throw new EventValidationError(`the event id ${badId}`, { topic });
  const pubsubName = options.pubsubName ?? defaults.pubsubName;
  if (typeof pubsubName !== 'string' || pubsubName.trim() === '') throw new EventValidationError('pubsubName must be a non-empty string', { eventId: id, topic });
  if (pubsubName.length > MAX_PUBSUB_NAME_LENGTH) {
    throw new EventValidationError(`pubsubName is ${pubsubName.length} characters long; at most ${MAX_PUBSUB_NAME_LENGTH}`, { eventId: id, topic });
  }
  const badPubsub = unstorable(pubsubName);
  if (badPubsub) throw new EventValidationError(`pubsubName ${badPubsub}`, { eventId: id, topic });
  let content: string;
  try {
    content = JSON.stringify(event);
  } catch (err) {
    throw new EventValidationError(`the event is not JSON-serialisable: ${(err as Error).message}`, { eventId: id, topic, cause: err });
  }
  if (typeof content !== 'string' || !content.startsWith('{')) {
    throw new EventValidationError('the event does not serialise to a JSON object', { eventId: id, topic });
  }
  const bytes = Buffer.byteLength(content, 'utf8');
  if (bytes > defaults.maxEventBytes) {
    throw new EventValidationError(`the event is ${bytes} bytes as JSON; maxEventBytes is ${defaults.maxEventBytes}`, { eventId: id, topic });
  }
  let orderingKey = options.orderingKey ?? e.orderingKey;
  // A numeric id is a fine key: taken as its decimal text.
  if ((typeof orderingKey === 'number' && Number.isFinite(orderingKey)) || typeof orderingKey === 'bigint') orderingKey = String(orderingKey);
  if (orderingKey !== undefined && orderingKey !== null) {
    if (typeof orderingKey !== 'string' || orderingKey.length === 0 || orderingKey.length > MAX_ORDERING_KEY_LENGTH) {
      throw new EventValidationError(`the ordering key must be a string of 1 to ${MAX_ORDERING_KEY_LENGTH} characters`, { eventId: id, topic });
    }
    const badKey = unstorable(orderingKey);
    if (badKey) throw new EventValidationError(`the ordering key ${badKey}`, { eventId: id, topic });
  }
  const created = e.creationTime;
  const creationTime = typeof created === 'string' || created instanceof Date ? new Date(created).getTime() : NaN;
  const traceparent = options.traceparent ?? trace?.traceparent;
  return {
    id,
    topic,
    pubsubName,
    eventTypeName: eventTypeName(event),
    content,
    traceparent: traceparent && TRACEPARENT.test(traceparent) ? traceparent : null,
    tracestate: (options.tracestate ?? trace?.tracestate)?.slice(0, 512) ?? null,
    creationTime: Number.isFinite(creationTime) ? creationTime : defaults.now,
    orderingKey: typeof orderingKey === 'string' ? orderingKey : null,
  };
}

/** A lone UTF-16 surrogate: no valid UTF-8 for it, so no database column or URL can carry it as given. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why a name or id could not be stored and sent back unchanged, or undefined: a NUL character
 * (SQLite's statement text ends there, PostgreSQL's text columns refuse it) or a lone surrogate
 * (it would be stored or sent as U+FFFD, a different topic or id).
 */
function unstorable(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains a NUL character (U+0000)';
  if (LONE_SURROGATE.test(value)) return 'contains a lone UTF-16 surrogate (not valid Unicode text)';
  return undefined;
}
