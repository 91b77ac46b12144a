/**
 * Reads daprd's bulk delivery (contract section 3, "Bulk subscribe"):
 * `{"id","type":"com.dapr.event.sent.bulk","topic","pubsubname","metadata",
 *   "entries":[{"entryId","event","metadata","contentType"}]}`
 * where `event` is the CloudEvent object, or for rawPayload subscriptions the broker's bytes in
 * base64. Each entry is read on its own: one malformed entry is answered DROP, the others run.
 */
import { decodeBase64, isJsonType, mediaType, parseJson, readStructured, type Parsed, type ReadEvent } from './cloudevent';
import type { CloudEvent } from './types';

export interface BulkEntry {
  entryId: string;
  metadata: Record<string, unknown>;
  /** The entry's event, or why it cannot be read. */
  read: Parsed<ReadEvent>;
}

export interface BulkDelivery {
  entries: BulkEntry[];
  /** Entries without a usable entryId: they cannot be answered (daprd retries them). */
  unnamed: number;
}

/** Reads the envelope; fails only when no entry can be named at all. */
export function readBulk(value: unknown, fallback: { topic: string; pubsubName: string }): Parsed<BulkDelivery> {
  const v = value as Record<string, unknown>;
  if (!Array.isArray(v.entries)) return { ok: false, reason: "a bulk delivery must have an 'entries' array" };
  const topic = typeof v.topic === 'string' && v.topic !== '' ? v.topic : fallback.topic;
  const pubsubName = typeof v.pubsubname === 'string' && v.pubsubname !== '' ? v.pubsubname : fallback.pubsubName;
  const entries: BulkEntry[] = [];
  const seen = new Set<string>();
  let unnamed = 0;
  for (const raw of v.entries as unknown[]) {
    const e = (raw !== null && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
    if (typeof e.entryId !== 'string' || e.entryId === '' || seen.has(e.entryId)) {
      unnamed++;
      continue;
    }
    seen.add(e.entryId);
    const metadata = e.metadata !== null && typeof e.metadata === 'object' ? (e.metadata as Record<string, unknown>) : {};
    const contentType = typeof e.contentType === 'string' ? e.contentType : '';
    entries.push({ entryId: e.entryId, metadata, read: readEntryEvent(e.event, contentType, e.entryId, topic, pubsubName) });
  }
  return { ok: true, value: { entries, unnamed } };
}

function readEntryEvent(event: unknown, contentType: string, entryId: string, topic: string, pubsubName: string): Parsed<ReadEvent> {
  const type = mediaType(contentType);
  if (event !== null && typeof event === 'object') return readStructured(event);
  if (typeof event !== 'string') return { ok: false, reason: `bulk entry ${entryId}: 'event' must be an object or a string, got ${event === null ? 'null' : typeof event}` };
  if (type === 'application/cloudevents+json') {
    const parsed = parseJson(event);
    return parsed.ok ? readStructured(parsed.value) : { ok: false, reason: `bulk entry ${entryId}: ${parsed.reason}` };
  }
  // A rawPayload entry: the broker's bytes in base64, with no CloudEvent around them. The entry
  // id stands in for the event id (daprd makes a new one per delivery).
  const bytes = decodeBase64(event);
  if (!bytes.ok) return { ok: false, reason: `bulk entry ${entryId}: ${bytes.reason}` };
  const datacontenttype = type || 'application/octet-stream';
  let data: unknown = bytes.value;
  if (isJsonType(datacontenttype)) {
    const parsed = parseJson(bytes.value);
    if (!parsed.ok) return { ok: false, reason: `bulk entry ${entryId}: ${parsed.reason}` };
    data = parsed.value;
  }
  const ce: CloudEvent = {
    id: entryId,
    specversion: '1.0',
    datacontenttype,
    source: 'Dapr',
    type: 'com.dapr.event.sent',
    topic,
    pubsubname: pubsubName,
    data_base64: event,
  };
  return { ok: true, value: { event: ce, data } };
}
