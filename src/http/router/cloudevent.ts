/**
 * Reads one delivery as a CloudEvent: structured mode (`application/cloudevents+json`, or
 * `application/json` holding a CloudEvent), binary mode (`ce-*` headers, the body is the data)
 * and the raw-payload envelope daprd builds for `rawPayload` subscriptions (`data_base64`).
 * Anything that cannot be read is a `Malformed` with the reason: the router answers DROP, since
 * the same bytes can never succeed.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CloudEvent } from './types';

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/** A CloudEvent with its data decoded for the handler. */
export interface ReadEvent {
  event: CloudEvent;
  data: unknown;
}

export const CLOUDEVENTS_JSON = 'application/cloudevents+json';
export const BULK_EVENT_TYPE = 'com.dapr.event.sent.bulk';

/** The media type of a Content-Type header, lower-cased, without parameters ('' when absent). */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** application/json, text/json and any `+json` type. */
export function isJsonType(type: string): boolean {
  const t = mediaType(type);
  return t === 'application/json' || t === 'text/json' || t.endsWith('+json');
}

/** JSON.parse of UTF-8 bytes, as a result instead of an exception. */
export function parseJson(bytes: Buffer | string): Parsed<unknown> {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, reason: `invalid JSON: ${(err as Error).message}` };
  }
}

/** Whether a request carries a binary-mode CloudEvent. */
export function isBinaryMode(headers: IncomingHttpHeaders): boolean {
  return typeof headers['ce-specversion'] === 'string' || typeof headers['ce-id'] === 'string';
}

/**
 * Checks a structured CloudEvent (an object from JSON) and decodes its data. The required
 * attributes are the spec's four: daprd always sets them, so an event without them was not built
 * by a sidecar.
 */
export function readStructured(value: unknown): Parsed<ReadEvent> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, reason: `a CloudEvent must be a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}` };
  }
  const ce = value as Record<string, unknown>;
  for (const name of ['id', 'source', 'type', 'specversion'] as const) {
    if (typeof ce[name] !== 'string' || ce[name] === '') {
      return { ok: false, reason: `not a CloudEvent: '${name}' must be a non-empty string, got ${describe(ce[name])}` };
    }
  }
  if (ce.datacontenttype !== undefined && typeof ce.datacontenttype !== 'string') {
    return { ok: false, reason: `'datacontenttype' must be a string, got ${describe(ce.datacontenttype)}` };
  }
  const data = decodeData(ce);
  if (!data.ok) return data;
  return { ok: true, value: { event: ce as CloudEvent, data: data.value } };
}

/**
 * `data` as it is; `data_base64` as a Buffer, or parsed when `datacontenttype` is JSON (the
 * raw-payload envelope says application/octet-stream, so its bytes stay a Buffer).
 */
function decodeData(ce: Record<string, unknown>): Parsed<unknown> {
  const b64 = ce.data_base64;
  if (b64 === undefined || b64 === null) return { ok: true, value: ce.data };
  if (ce.data !== undefined && ce.data !== null) return { ok: false, reason: "a CloudEvent must not carry both 'data' and 'data_base64'" };
  const bytes = decodeBase64(b64);
  if (!bytes.ok) return bytes;
  if (typeof ce.datacontenttype === 'string' && isJsonType(ce.datacontenttype)) {
    const parsed = parseJson(bytes.value);
    return parsed.ok ? parsed : { ok: false, reason: `data_base64 of a ${mediaType(ce.datacontenttype)} event: ${parsed.reason}` };
  }
  return bytes;
}

/** Standard base64 (padding optional, as Go and JS emit it); anything else is rejected. */
export function decodeBase64(value: unknown): Parsed<Buffer> {
  if (typeof value !== 'string') return { ok: false, reason: `data_base64 must be a string, got ${describe(value)}` };
  const s = value.replace(/[\r\n]/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.replace(/=+$/, '').length % 4 === 1 || (s.includes('=') && s.length % 4 !== 0)) {
    return { ok: false, reason: 'data_base64 is not valid base64' };
  }
  return { ok: true, value: Buffer.from(s, 'base64') };
}

/**
 * A binary-mode delivery: attributes from `ce-<name>` headers (percent-decoded, as the HTTP
 * binding encodes them), the body is the data in the request's Content-Type.
 */
export function readBinary(headers: IncomingHttpHeaders, body: Buffer): Parsed<ReadEvent> {
  const ce: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(headers)) {
    if (!name.startsWith('ce-') || name.length === 3) continue;
    const v = Array.isArray(raw) ? raw[0] : raw;
    if (typeof v !== 'string') continue;
    ce[name.slice(3)] = percentDecode(v);
  }
  for (const name of ['id', 'source', 'type', 'specversion'] as const) {
    if (typeof ce[name] !== 'string' || ce[name] === '') return { ok: false, reason: `binary-mode CloudEvent without a 'ce-${name}' header` };
  }
  const contentType = typeof headers['content-type'] === 'string' ? headers['content-type'] : undefined;
  if (contentType) ce.datacontenttype = contentType;
  let data: unknown;
  if (body.length === 0) data = undefined;
  else if (contentType && isJsonType(contentType)) {
    const parsed = parseJson(body);
    if (!parsed.ok) return parsed;
    data = parsed.value;
  } else if (mediaType(contentType).startsWith('text/')) data = body.toString('utf8');
  else data = body;
  if (data !== undefined) ce.data = data;
  return { ok: true, value: { event: ce as CloudEvent, data } };
}

function percentDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/**
 * A single (non-bulk) delivery, from the body and headers. `body` is either the raw bytes or a
 * value an earlier body parser produced.
 */
export function readSingleDelivery(headers: IncomingHttpHeaders, body: { bytes: Buffer } | { value: unknown }): Parsed<ReadEvent> {
  if (isBinaryMode(headers)) {
    if ('value' in body) {
      const b = body.value;
      const bytes = Buffer.isBuffer(b) ? b : Buffer.from(typeof b === 'string' ? b : JSON.stringify(b), 'utf8');
      return readBinary(headers, bytes);
    }
    return readBinary(headers, body.bytes);
  }
  const value = jsonBody(headers, body);
  return value.ok ? readStructured(value.value) : value;
}

/**
 * The body as JSON, when its Content-Type allows: `application/cloudevents+json`,
 * `application/json` (or none at all, leniently). Anything else is the wrong content type.
 */
export function jsonBody(headers: IncomingHttpHeaders, body: { bytes: Buffer } | { value: unknown }): Parsed<unknown> {
  if ('value' in body) return { ok: true, value: body.value };
  const type = mediaType(headers['content-type']);
  if (type !== '' && type !== CLOUDEVENTS_JSON && type !== 'application/json') {
    return { ok: false, reason: `unsupported Content-Type '${type}': expected ${CLOUDEVENTS_JSON}, application/json or a binary-mode CloudEvent (ce-* headers)` };
  }
  if (body.bytes.length === 0) return { ok: false, reason: 'empty body: expected a CloudEvent' };
  return parseJson(body.bytes);
}

/** Whether a JSON value is daprd's bulk envelope. */
export function isBulkEnvelope(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return v.type === BULK_EVENT_TYPE || (Array.isArray(v.entries) && v.specversion === undefined);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  return Array.isArray(v) ? 'an array' : typeof v;
}
