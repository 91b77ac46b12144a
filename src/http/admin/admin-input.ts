/**
 * The admin API's input checks: every query parameter and body field is read here, and a bad
 * one is answered 400 with its name. Query strings are read from the raw URL (the same under
 * Express 4 and 5, whatever query parser the app set), unknown or repeated parameters refused.
 */
import type { EventPageQuery, EventState, RepublishFilter } from '../../ports/outbox-store';
import type { InboxPageQuery } from '../../ports/inbox-store';

/** A request input that fails its rule; the router answers 400 with `field`. */
export class AdminInputError extends Error {
  constructor(
    readonly field: string,
    readonly rule: string,
  ) {
    super(`${field} ${rule}`);
    this.name = 'AdminInputError';
  }
}

/** Rows per page: default and largest. */
export const PAGE_LIMIT = { default: 50, max: 200 } as const;
/** Longest search text, characters. */
export const MAX_QUERY_CHARS = 200;
/** Event ids per republish or delete request. */
export const MAX_IDS = 1000;
/** Row ids a topic or text filter reads per page (see EventPageQuery.scanLimit). */
export const SCAN_LIMIT = 10_000;

const EVENT_ID_CHARS = 64;
const TOPIC_CHARS = 255;
const INBOX_KEY_CHARS = 191;

/** The query parameters of a URL, each at most once, none other than `allowed`. */
export function readQuery(url: string, allowed: readonly string[]): Map<string, string> {
  const at = url.indexOf('?');
  const params = new URLSearchParams(at < 0 ? '' : url.slice(at + 1));
  const out = new Map<string, string>();
  for (const [key, value] of params) {
    if (!allowed.includes(key)) throw new AdminInputError(key, `is not a parameter of this route (allowed: ${allowed.join(', ') || 'none'})`);
    if (out.has(key)) throw new AdminInputError(key, 'must be given once');
    out.set(key, value);
  }
  return out;
}

/** Text of 1..max characters without control characters (which no id, topic or search holds). */
export function text(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) throw new AdminInputError(field, `must be a string of 1 to ${max} characters`);
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new AdminInputError(field, 'must not contain control characters');
  return value;
}

/** A decimal integer in [min, max], as a query parameter (digits only) or a JSON number. */
export function integer(field: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^[0-9]{1,16}$/.test(value) ? Number(value) : typeof value === 'number' ? value : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new AdminInputError(field, `must be an integer from ${min} to ${max}`);
  return n;
}

const STATES: Record<string, EventState | 'terminal'> = { '0': 0, '1': 1, '2': 2, '3': 3, terminal: 'terminal' };

/** `GET events?state=&topic=&q=&after=&limit=` */
export function readEventPageQuery(url: string): EventPageQuery {
  const p = readQuery(url, ['state', 'topic', 'q', 'after', 'limit']);
  const query: EventPageQuery = { limit: PAGE_LIMIT.default, scanLimit: SCAN_LIMIT };
  const state = p.get('state');
  if (state !== undefined && state !== '') {
    if (!(state in STATES)) throw new AdminInputError('state', "must be 0, 1, 2, 3 or 'terminal'");
    query.state = STATES[state];
  }
  const topic = p.get('topic');
  if (topic !== undefined && topic !== '') query.topic = text('topic', topic, TOPIC_CHARS);
  const q = p.get('q');
  if (q !== undefined && q !== '') query.q = text('q', q, MAX_QUERY_CHARS);
  const after = p.get('after');
  if (after !== undefined) query.before = integer('after', after, 1, Number.MAX_SAFE_INTEGER);
  const limit = p.get('limit');
  if (limit !== undefined) query.limit = integer('limit', limit, 1, PAGE_LIMIT.max);
  return query;
}

/** `GET inbox?consumer=&after=&afterConsumer=&limit=`: with a consumer `after` is an event id of it. */
export function readInboxPageQuery(url: string): InboxPageQuery {
  const p = readQuery(url, ['consumer', 'after', 'afterConsumer', 'limit']);
  const query: InboxPageQuery = { limit: PAGE_LIMIT.default };
  const consumer = p.get('consumer');
  if (consumer !== undefined && consumer !== '') query.consumer = text('consumer', consumer, INBOX_KEY_CHARS);
  const after = p.get('after');
  const afterConsumer = p.get('afterConsumer');
  if (after !== undefined) {
    const eventId = text('after', after, INBOX_KEY_CHARS);
    if (query.consumer !== undefined) {
      if (afterConsumer !== undefined && afterConsumer !== query.consumer) throw new AdminInputError('afterConsumer', 'must be the consumer asked for (or left out)');
      query.after = { consumer: query.consumer, eventId };
    } else {
      if (afterConsumer === undefined) throw new AdminInputError('afterConsumer', 'is required with after when no consumer is given');
      query.after = { consumer: text('afterConsumer', afterConsumer, INBOX_KEY_CHARS), eventId };
    }
  } else if (afterConsumer !== undefined) {
    throw new AdminInputError('after', 'is required with afterConsumer');
  }
  const limit = p.get('limit');
  if (limit !== undefined) query.limit = integer('limit', limit, 1, PAGE_LIMIT.max);
  return query;
}

/** An event id from the path. */
export function readEventId(value: unknown): string {
  return text('id', value, EVENT_ID_CHARS);
}

/**
 * The body of `POST events/republish` and `POST events/delete`: `{"ids": [...]}` or
 * `{"filter": {"topic"?, "since"?, "before"?}}` (times in epoch ms; `{"filter": {}}` is every
 * terminal failure: "retry all").
 */
export function readTargetBody(body: unknown): RepublishFilter {
  if (!isPlainObject(body)) throw new AdminInputError('body', 'must be a JSON object with ids or filter');
  for (const key of Object.keys(body)) if (key !== 'ids' && key !== 'filter') throw new AdminInputError(key, 'is not a field of this request (ids or filter)');
  if ((body.ids === undefined) === (body.filter === undefined)) throw new AdminInputError('ids', 'or filter must be given, not both');
  if (body.ids !== undefined) {
    if (!Array.isArray(body.ids) || body.ids.length === 0 || body.ids.length > MAX_IDS) throw new AdminInputError('ids', `must be an array of 1 to ${MAX_IDS} event ids`);
    return { ids: body.ids.map((id, i) => text(`ids[${i}]`, id, EVENT_ID_CHARS)) };
  }
  const f = body.filter;
  if (!isPlainObject(f)) throw new AdminInputError('filter', 'must be an object');
  const filter: RepublishFilter = {};
  for (const [key, value] of Object.entries(f)) {
    if (key === 'topic') filter.topic = text('filter.topic', value, TOPIC_CHARS);
    else if (key === 'since' || key === 'before') filter[key] = integer(`filter.${key}`, value, 0, Number.MAX_SAFE_INTEGER);
    else throw new AdminInputError(`filter.${key}`, 'is not a filter field (topic, since, before)');
  }
  if (filter.since !== undefined && filter.before !== undefined && filter.since > filter.before) throw new AdminInputError('filter.since', 'must not be later than filter.before');
  return filter;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
