import type { OutboxMessage } from '../../ports/publisher';

/** What the sidecar writes when a request had no trace context: not worth passing on. */
const ZERO_TRACE = /^00-0{32}-0{16}-00$/;

function traceparentOf(m: OutboxMessage): string | undefined {
  return m.traceparent && !ZERO_TRACE.test(m.traceparent) ? m.traceparent : undefined;
}

/**
 * Pubsub name and topic as path segments of a publish URL, percent-encoded ('/' in a topic stays
 * a separator: daprd reads the topic as the rest of the path).
 *
 * daprd decodes these path parameters twice when the path is exactly how Go itself would encode
 * it (its router then works on the decoded path, and the parameters are unescaped once more), so
 * a '%' in a name would be decoded a second time: `rate%20100%25` becomes `rate 100%`, then a 400.
 * Any escape Go would not write makes Go keep the raw path and decode once; escaping one letter
 * of the pubsub name does that without changing what it decodes to.
 */
export function publishPath(pubsubName: string, topic: string): [string, string] {
  const encodedTopic = topic.split('/').map(encodeURIComponent).join('/');
  const letter = /[A-Za-z0-9]/.exec(pubsubName);
  if (!(pubsubName + topic).includes('%') || !letter) return [encodeURIComponent(pubsubName), encodedTopic];
  const i = letter.index;
  const escaped = `%${pubsubName.charCodeAt(i).toString(16).toUpperCase()}`;
  return [encodeURIComponent(pubsubName.slice(0, i)) + escaped + encodeURIComponent(pubsubName.slice(i + 1)), encodedTopic];
}

/**
 * Publish metadata: the CloudEvent id is pinned to the event id, so every attempt of an event
 * reaches subscribers with the same id and their inbox can drop repeats.
 */
export function publishMetadata(m: OutboxMessage): Record<string, string> {
  const metadata: Record<string, string> = { 'cloudevent.id': m.id };
  const traceparent = traceparentOf(m);
  if (traceparent) {
    metadata['cloudevent.traceparent'] = traceparent;
    metadata['cloudevent.traceid'] = traceparent;
    if (m.tracestate) metadata['cloudevent.tracestate'] = m.tracestate;
  }
  return metadata;
}

/** The metadata as query parameters `metadata.<key>`, encoded as @dapr/dapr encodes them. */
export function metadataQuery(metadata: Record<string, string>): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(metadata)) query.set(`metadata.${key}`, value);
  return query.toString();
}

/** A keyed message: it carries its ordering key and its place in the key's order. */
export type KeyedMessage = OutboxMessage & { readonly orderingKey: string; readonly sequence: number };

/**
 * True for a message with an ordering key and a sequence number: it goes out as a CloudEvent of
 * our own with the `partitionkey` and `sequence` attributes. Every other message is unkeyed.
 */
export function isKeyed(m: OutboxMessage): m is KeyedMessage {
  return m.orderingKey != null && m.sequence != null;
}

/**
 * The `sequence` attribute: the CloudEvents Sequence extension is a string, and the receiving
 * side reads it as a positive decimal integer. The number is written as it is given (a driver may
 * hand a BIGINT over as a string), and refused when it is not such an integer: a subscriber could
 * not place it in its key's order.
 */
export function sequenceText(m: KeyedMessage): string | undefined {
  const text = String(m.sequence);
  return /^[1-9][0-9]*$/.test(text) ? text : undefined;
}

/** Publish metadata of a keyed message: every configured key (partitionKey, SessionId, ...) set to its ordering key. */
export function keyedMetadata(m: KeyedMessage, keyMetadata: readonly string[]): Record<string, string> {
  const metadata = publishMetadata(m);
  for (const key of keyMetadata) metadata[key] = m.orderingKey;
  return metadata;
}

/** The event as a CloudEvent of our own: daprd keeps its id and fills source, type, time. */
export function cloudEventOf(m: OutboxMessage, data: unknown): Record<string, unknown> {
  const ce: Record<string, unknown> = { specversion: '1.0', id: m.id, datacontenttype: 'application/json', data };
  const traceparent = traceparentOf(m);
  if (traceparent) {
    ce.traceid = traceparent;
    ce.traceparent = traceparent;
    ce.tracestate = m.tracestate ?? '';
  }
  if (isKeyed(m)) {
    ce.partitionkey = m.orderingKey;
    ce.sequence = String(m.sequence);
  }
  return ce;
}

/**
 * cloudEventOf as JSON text, the same as JSON.stringify of `cloudEventOf(m, data)`, with the
 * stored content spliced in as `data`. The content must have been checked to be JSON.
 */
export function cloudEventJson(m: OutboxMessage): string {
  let event = `{"specversion":"1.0","id":${JSON.stringify(m.id)},"datacontenttype":"application/json","data":${m.content}`;
  const traceparent = traceparentOf(m);
  if (traceparent) {
    const tp = JSON.stringify(traceparent);
    event += `,"traceid":${tp},"traceparent":${tp},"tracestate":${JSON.stringify(m.tracestate ?? '')}`;
  }
  if (isKeyed(m)) event += `,"partitionkey":${JSON.stringify(m.orderingKey)},"sequence":${JSON.stringify(String(m.sequence))}`;
  return `${event}}`;
}

/**
 * One entry of a bulk publish body as JSON text, the same as JSON.stringify of
 * `{ entryId, contentType, event: cloudEventOf(m, data) }`, with the stored content spliced in as
 * `data`; a keyed message's entry also has `metadata` (its ordering key under each of
 * `keyMetadata`, as a single publish sends it). The content must have been checked to be JSON.
 */
export function bulkEntryJson(m: OutboxMessage, keyMetadata: readonly string[]): string {
  const entry = `{"entryId":${JSON.stringify(m.id)},"contentType":"application/cloudevents+json","event":${cloudEventJson(m)}`;
  if (!isKeyed(m)) return `${entry}}`;
  return `${entry},"metadata":${JSON.stringify(entryMetadata(m, keyMetadata))}}`;
}

/** A keyed bulk entry's own metadata: its ordering key under each of `keyMetadata` (the request carries none). */
export function entryMetadata(m: KeyedMessage, keyMetadata: readonly string[]): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const key of keyMetadata) metadata[key] = m.orderingKey;
  return metadata;
}
