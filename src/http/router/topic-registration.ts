/**
 * `router.topic()` arguments, checked when the topic is registered, and the `/dapr/subscribe`
 * item each registered topic becomes.
 */
import { createHash } from 'node:crypto';
import { OutboxConfigError } from '../../errors';
import { defaultRoute, defaultRulePath, isDotSegment, normalizeRoute } from './route-paths';
import type { DaprSubscription, TopicHandler, TopicOptions, TopicValidator } from './types';
import type { OrderingStart } from './router-options';

/** Dapr's bulk subscriber defaults. */
export const BULK_DEFAULTS = Object.freeze({ maxMessagesCount: 100, maxAwaitDurationMs: 1000 });

/** The inbox columns are VARCHAR(191) (the longest utf8mb4 key MySQL indexes in full). */
export const INBOX_KEY_MAX = 191;

/** A topic as the router keeps it. */
export interface RegisteredTopic {
  pubsubName: string;
  topic: string;
  route: string;
  handler: TopicHandler;
  rules: Array<{ match: string; path: string; handler: TopicHandler }>;
  metadata: Record<string, string> | undefined;
  deadLetterTopic: string | undefined;
  bulk: { maxMessagesCount: number; maxAwaitDurationMs: number } | undefined;
  validate: TopicValidator | undefined;
  consumer: string;
  /**
   * Whose position in each ordering key the inbox keeps: the consumer, made unique to this
   * pubsub and topic. A topic's own `consumer` may be shared by several topics, while a key's
   * sequence numbers count on one pubsub and topic only.
   */
  orderingConsumer: string;
  /** How long a key of this topic waits for a missing sequence, milliseconds. */
  orderingGapTimeoutMs: number;
  /** Where this topic's consumer starts in a key it has never handled. */
  orderingStart: OrderingStart;
}

export interface RegistrationDefaults {
  routePrefix: string;
  /** The router's `consumer` option. */
  consumer: string | undefined;
  /** The router's `orderingGapTimeout`, milliseconds. */
  orderingGapTimeoutMs: number;
  /** The router's `orderingStart`. */
  orderingStart: OrderingStart;
}

/** Checks the arguments of `router.topic()`; throws OutboxConfigError naming the option. */
export function registerTopic(
  pubsubName: string,
  topic: string,
  handler: TopicHandler,
  options: TopicOptions | undefined,
  defaults: RegistrationDefaults,
): RegisteredTopic {
  if (typeof pubsubName !== 'string' || pubsubName.trim() === '') throw new OutboxConfigError('pubsubName', pubsubName, 'must be a non-empty string');
  if (typeof topic !== 'string' || topic.trim() === '') throw new OutboxConfigError('topic', topic, 'must be a non-empty string');
  if (typeof handler !== 'function') throw new OutboxConfigError('handler', handler, `of topic '${topic}' must be a function (data, ctx) => ...`);
  const o: TopicOptions = options ?? {};
  if (typeof o !== 'object') throw new OutboxConfigError('options', o, `of topic '${topic}' must be an object`);

  let route = defaultRoute(defaults.routePrefix, pubsubName, topic);
  if (o.route === undefined && (isDotSegment(pubsubName) || isDotSegment(topic))) {
    throw new OutboxConfigError('route', undefined, `of topic '${topic}' on '${pubsubName}' must be given: a name '.' or '..' cannot be a path segment (URL parsers remove it)`);
  }
  if (o.route !== undefined) {
    const r = normalizeRoute(o.route);
    if (r === undefined) throw new OutboxConfigError('route', o.route, `of topic '${topic}' must be a path like '/orders' (no query, fragment, spaces, empty or dot segments)`);
    route = r;
  }

  const rules: RegisteredTopic['rules'] = [];
  if (o.rules !== undefined) {
    if (!Array.isArray(o.rules) || o.rules.length === 0) throw new OutboxConfigError('rules', o.rules, `of topic '${topic}' must be a non-empty array of { match, path?, handler? }`);
    o.rules.forEach((rule, i) => {
      if (!rule || typeof rule !== 'object') throw new OutboxConfigError(`rules[${i}]`, rule, 'must be an object { match, path?, handler? }');
      if (typeof rule.match !== 'string' || rule.match.trim() === '') throw new OutboxConfigError(`rules[${i}].match`, rule.match, 'must be a non-empty CEL expression');
      let path = defaultRulePath(route, i);
      if (rule.path !== undefined) {
        const p = normalizeRoute(rule.path);
        if (p === undefined) throw new OutboxConfigError(`rules[${i}].path`, rule.path, 'must be a path like /widgets (no query, fragment, spaces, empty or dot segments)');
        path = p;
      }
      if (rule.handler !== undefined && typeof rule.handler !== 'function') throw new OutboxConfigError(`rules[${i}].handler`, rule.handler, 'must be a function');
      rules.push({ match: rule.match, path, handler: rule.handler ?? handler });
    });
  }

  let metadata: Record<string, string> | undefined;
  if (o.metadata !== undefined) {
    if (!o.metadata || typeof o.metadata !== 'object' || Array.isArray(o.metadata)) throw new OutboxConfigError('metadata', o.metadata, 'must be an object of string values');
    metadata = {};
    for (const [key, value] of Object.entries(o.metadata)) {
      // daprd reads metadata as map[string]string: a JSON-stringified value ("\"true\"") is a different string.
      if (typeof value === 'string') metadata[key] = value;
      else if (typeof value === 'number' || typeof value === 'boolean') metadata[key] = String(value);
      else throw new OutboxConfigError(`metadata.${key}`, value, 'must be a string, number or boolean');
    }
  }
  if (o.rawPayload !== undefined) {
    if (typeof o.rawPayload !== 'boolean') throw new OutboxConfigError('rawPayload', o.rawPayload, 'must be a boolean');
    metadata = { ...(metadata ?? {}), rawPayload: String(o.rawPayload) };
  }

  if (o.deadLetterTopic !== undefined && (typeof o.deadLetterTopic !== 'string' || o.deadLetterTopic.trim() === '')) {
    throw new OutboxConfigError('deadLetterTopic', o.deadLetterTopic, 'must be a non-empty topic name');
  }

  let bulk: RegisteredTopic['bulk'];
  if (o.bulk !== undefined) {
    if (o.bulk !== true && (!o.bulk || typeof o.bulk !== 'object')) throw new OutboxConfigError('bulk', o.bulk, 'must be true or { maxMessagesCount?, maxAwaitDurationMs? }');
    const b = o.bulk === true ? {} : o.bulk;
    const maxMessagesCount = b.maxMessagesCount ?? BULK_DEFAULTS.maxMessagesCount;
    const maxAwaitDurationMs = b.maxAwaitDurationMs ?? BULK_DEFAULTS.maxAwaitDurationMs;
    // daprd reads both as int32 and replaces 0 or less by its default: require what it keeps.
    if (!Number.isInteger(maxMessagesCount) || maxMessagesCount < 1 || maxMessagesCount > 2147483647) {
      throw new OutboxConfigError('bulk.maxMessagesCount', b.maxMessagesCount, 'must be an integer >= 1');
    }
    if (!Number.isInteger(maxAwaitDurationMs) || maxAwaitDurationMs < 1 || maxAwaitDurationMs > 2147483647) {
      throw new OutboxConfigError('bulk.maxAwaitDurationMs', b.maxAwaitDurationMs, 'must be an integer number of milliseconds >= 1');
    }
    bulk = { maxMessagesCount, maxAwaitDurationMs };
  }

  if (o.validate !== undefined && !isValidator(o.validate)) {
    throw new OutboxConfigError('validate', o.validate, 'must be a function, or a schema with parse(), safeParse() or validate()');
  }

  let consumer: string;
  if (o.consumer !== undefined) {
    if (typeof o.consumer !== 'string' || o.consumer === '' || o.consumer.length > INBOX_KEY_MAX) {
      throw new OutboxConfigError('consumer', o.consumer, `must be a non-empty string of at most ${INBOX_KEY_MAX} characters`);
    }
    consumer = o.consumer;
  } else {
    consumer = inboxKey(`${defaults.consumer ? `${defaults.consumer}/` : ''}${pubsubName}/${topic}`);
  }

  const orderingGapTimeoutMs = o.orderingGapTimeout === undefined ? defaults.orderingGapTimeoutMs : gapTimeoutMs('orderingGapTimeout', o.orderingGapTimeout, o.orderingGapTimeout);

  return {
    pubsubName,
    topic,
    route,
    handler,
    rules,
    metadata,
    deadLetterTopic: o.deadLetterTopic,
    bulk,
    validate: o.validate,
    consumer,
    // The default consumer already names the pubsub and topic.
    orderingConsumer: o.consumer === undefined ? consumer : inboxKey(`${consumer}/${pubsubName}/${topic}`),
    orderingGapTimeoutMs,
    orderingStart: o.orderingStart === undefined ? defaults.orderingStart : checkOrderingStart(o.orderingStart),
  };
}

/** `orderingStart`, checked. */
export function checkOrderingStart(value: unknown): OrderingStart {
  if (value !== 'beginning' && value !== 'first-delivered') throw new OutboxConfigError('orderingStart', value, "must be 'beginning' or 'first-delivered'");
  return value;
}

/** A gap timeout in seconds (> 0; Infinity: never skip), as milliseconds. */
export function gapTimeoutMs(name: string, value: number, given: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) throw new OutboxConfigError(name, given, 'must be a number of seconds > 0 (Infinity: never skip)');
  return value === Infinity ? Infinity : Math.max(1, Math.round(value * 1000));
}

function isValidator(v: unknown): v is TopicValidator {
  if (typeof v === 'function') return true;
  if (!v || typeof v !== 'object') return false;
  const s = v as Record<string, unknown>;
  return typeof s.parse === 'function' || typeof s.safeParse === 'function' || typeof s.validate === 'function';
}

/**
 * Fits a value into an inbox key column: kept as it is up to 191 characters, else a prefix plus
 * the SHA-256 of the whole value (still unique, and the same on every delivery).
 */
export function inboxKey(value: string): string {
  if (value.length <= INBOX_KEY_MAX) return value;
  const hash = createHash('sha256').update(value, 'utf8').digest('hex');
  return `${value.slice(0, INBOX_KEY_MAX - hash.length - 8)}#sha256:${hash}`;
}

/** The `/dapr/subscribe` item of a topic. `base` is where the router is mounted ('' at the root). */
export function subscriptionItem(t: RegisteredTopic, base: string): DaprSubscription {
  const item: DaprSubscription = { pubsubname: t.pubsubName, topic: t.topic, route: base + t.route };
  if (t.rules.length > 0) {
    item.routes = { rules: t.rules.map((r) => ({ match: r.match, path: base + r.path })), default: base + t.route };
  }
  if (t.metadata !== undefined) item.metadata = { ...t.metadata };
  if (t.deadLetterTopic !== undefined) item.deadLetterTopic = t.deadLetterTopic;
  if (t.bulk !== undefined) item.bulkSubscribe = { enabled: true, ...t.bulk };
  return item;
}
