/**
 * The body of a bulk publish request, decoded as daprd decodes it: Go's json.Decoder into
 * `[]bulkPublishMessageEntry{EntryID, Event, ContentType, Metadata}` (field names matched
 * case-insensitively, so the JS SDK's `entryID` works), then ConvertEventToBytes per entry.
 */
import { isBinaryContentType, isCloudEventContentType, isJsonContentType, isStringContentType } from './content-type';
import { goField, goKind, GoObject, GoValue, isGoObject, marshalGo, parseFirstValue } from './go-json';
import { Metadata, setOwn } from './request-metadata';

export interface BulkEntryInput {
  entryId: string;
  /** undefined when the entry has no `event` key (Go: nil). */
  event: GoValue | undefined;
  contentType: string;
  /** undefined when the entry has no metadata object (daprd then applies no metadata to it). */
  metadata: Metadata | undefined;
}

export type DecodedEntries = { ok: true; entries: BulkEntryInput[] } | { ok: false; error: string };

const ENTRY_TYPE = 'http.bulkPublishMessageEntry';

export function decodeBulkEntries(body: Buffer): DecodedEntries {
  const parsed = parseFirstValue(body.toString('utf8'));
  if (!parsed.ok) return { ok: false, error: parsed.error };
  if (parsed.value === null) return { ok: true, entries: [] };
  if (!Array.isArray(parsed.value)) {
    return { ok: false, error: `json: cannot unmarshal ${goKind(parsed.value)} into Go value of type []${ENTRY_TYPE}` };
  }
  const entries: BulkEntryInput[] = [];
  for (const item of parsed.value) {
    if (item === null) {
      entries.push({ entryId: '', event: undefined, contentType: '', metadata: undefined });
      continue;
    }
    if (!isGoObject(item)) return { ok: false, error: `json: cannot unmarshal ${goKind(item)} into Go value of type ${ENTRY_TYPE}` };
    const entry = decodeEntry(item);
    if (typeof entry === 'string') return { ok: false, error: entry };
    entries.push(entry);
  }
  return { ok: true, entries };
}

function decodeEntry(item: GoObject): BulkEntryInput | string {
  const str = (name: string): string | { error: string } => {
    const value = goField(item, name);
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') {
      return { error: `json: cannot unmarshal ${goKind(value)} into Go struct field ${ENTRY_TYPE}.${name} of type string` };
    }
    return value;
  };
  const entryId = str('entryId');
  if (typeof entryId !== 'string') return entryId.error;
  const contentType = str('contentType');
  if (typeof contentType !== 'string') return contentType.error;
  const rawMetadata = goField(item, 'metadata');
  let metadata: Metadata | undefined;
  if (rawMetadata !== undefined && rawMetadata !== null) {
    if (!isGoObject(rawMetadata)) {
      return `json: cannot unmarshal ${goKind(rawMetadata)} into Go struct field ${ENTRY_TYPE}.metadata of type map[string]string`;
    }
    metadata = {};
    for (const [key, value] of rawMetadata) {
      if (typeof value !== 'string') {
        return `json: cannot unmarshal ${goKind(value)} into Go struct field ${ENTRY_TYPE}.metadata of type string`;
      }
      setOwn(metadata, key, value);
    }
  }
  const event = goField(item, 'event');
  return { entryId, event, contentType, metadata };
}

export type EventBytes = { ok: true; bytes: Buffer } | { ok: false; error: string };

const MISMATCH = 'error: mismatch between contentType and event';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** dapr pkg/api/http ConvertEventToBytes. */
export function eventToBytes(event: GoValue | undefined, contentType: string): EventBytes {
  if (isBinaryContentType(contentType)) {
    if (typeof event !== 'string') return { ok: false, error: MISMATCH };
    const text = event.replace(/[\r\n]/g, '');
    if (!BASE64.test(text)) {
      const at = firstBadBase64Byte(text);
      return { ok: false, error: `error: unable to decode base64 application/octect-stream data: illegal base64 data at input byte ${at}` };
    }
    return { ok: true, bytes: Buffer.from(text, 'base64') };
  }
  if (isStringContentType(contentType)) {
    if (typeof event !== 'string') return { ok: false, error: MISMATCH };
    return { ok: true, bytes: Buffer.from(event, 'utf8') };
  }
  if (isJsonContentType(contentType) || isCloudEventContentType(contentType)) {
    // The event was decoded without UseNumber, so its numbers went through float64.
    return { ok: true, bytes: Buffer.from(marshalGo(event === undefined ? null : event, { float64Numbers: true }), 'utf8') };
  }
  return { ok: false, error: MISMATCH };
}

function firstBadBase64Byte(text: string): number {
  const bad = text.search(/[^A-Za-z0-9+/=]/);
  if (bad >= 0) return bad;
  const pad = text.indexOf('=');
  return pad >= 0 ? pad : text.length - (text.length % 4);
}
