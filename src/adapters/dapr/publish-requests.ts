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

/** The event as a CloudEvent of our own: daprd keeps its id and fills source, type, time. */
export function cloudEventOf(m: OutboxMessage, data: unknown): Record<string, unknown> {
  const ce: Record<string, unknown> = { specversion: '1.0', id: m.id, datacontenttype: 'application/json', data };
  const traceparent = traceparentOf(m);
  if (traceparent) {
    ce.traceid = traceparent;
    ce.traceparent = traceparent;
    ce.tracestate = m.tracestate ?? '';
  }
  return ce;
}

/**
 * One entry of a bulk publish body as JSON text, the same as JSON.stringify of
 * `{ entryId, contentType, event: cloudEventOf(m, data) }`, with the stored content spliced in as
 * `data`. The content must have been checked to be JSON.
 */
export function bulkEntryJson(m: OutboxMessage): string {
  const id = JSON.stringify(m.id);
  let event = `{"specversion":"1.0","id":${id},"datacontenttype":"application/json","data":${m.content}`;
  const traceparent = traceparentOf(m);
  if (traceparent) {
    const tp = JSON.stringify(traceparent);
    event += `,"traceid":${tp},"traceparent":${tp},"tracestate":${JSON.stringify(m.tracestate ?? '')}`;
  }
  return `{"entryId":${id},"contentType":"application/cloudevents+json","event":${event}}}`;
}
