/**
 * The CloudEvent envelope daprd wraps around a published body (components-contrib
 * pubsub/envelope.go and dapr pkg/runtime/pubsub/cloudevents.go), built as a Go map so that
 * marshalGo writes it with daprd's key order and escaping.
 */
import { randomUUID } from 'node:crypto';
import { isBinaryContentType, isCloudEventContentType, isJsonContentType } from './content-type';
import { goKind, GoObject, GoValue, isGoObject, parseFirstValue } from './go-json';
import { Metadata, readCloudEventOverrides, readTtlSeconds } from './request-metadata';

export const DEFAULT_EVENT_TYPE = 'com.dapr.event.sent';
export const DEFAULT_BULK_EVENT_TYPE = 'com.dapr.event.sent.bulk';
export const DEFAULT_SOURCE = 'Dapr';
export const SPEC_VERSION = '1.0';
export const DEFAULT_DATA_CONTENT_TYPE = 'text/plain';
/** What daprd writes when the publish request carried no trace context. */
export const ZERO_TRACEPARENT = '00-00000000000000000000000000000000-0000000000000000-00';

/** Time as Go's time.Format(time.RFC3339) writes it, in UTC: whole seconds, `Z`. */
export function rfc3339(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The trace context of a publish request: a well-formed `traceparent` header, else the zero one. */
export function traceContextOf(headers: Record<string, string | string[] | undefined>): {
  traceParent: string;
  traceState: string;
} {
  const parent = single(headers.traceparent)?.trim().toLowerCase();
  if (parent === undefined || !TRACEPARENT.test(parent)) return { traceParent: ZERO_TRACEPARENT, traceState: '' };
  return { traceParent: parent, traceState: single(headers.tracestate)?.trim() ?? '' };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export interface EnvelopeRequest {
  /** The publisher's app id. */
  source: string;
  topic: string;
  pubsubName: string;
  /** The request's Content-Type header, '' when absent. */
  contentType: string;
  body: Buffer;
  traceParent: string;
  traceState: string;
  /** Publish metadata (overrides and TTL are read from it). */
  metadata: Metadata;
  now: Date;
}

export type EnvelopeResult = { ok: true; envelope: GoObject } | { ok: false; error: string };

/**
 * daprd's NewCloudEvent + ApplyMetadata: an existing CloudEvent (content type
 * application/cloudevents+json) is completed, anything else is wrapped in a new one.
 */
export function buildEnvelope(req: EnvelopeRequest): EnvelopeResult {
  let result: EnvelopeResult;
  if (isCloudEventContentType(req.contentType)) {
    result = fromCloudEvent(req);
  } else {
    const o = readCloudEventOverrides(req.metadata);
    let traceId = o.traceid ?? req.traceParent;
    if (o.traceparent) traceId = o.traceparent;
    result = {
      ok: true,
      envelope: newCloudEventsEnvelope({
        id: o.id ?? '',
        source: o.source ?? req.source,
        type: o.type ?? '',
        subject: o.subject ?? '',
        topic: req.topic,
        pubsubName: req.pubsubName,
        dataContentType: req.contentType,
        data: req.body,
        traceParent: traceId,
        traceState: o.tracestate ?? req.traceState,
        now: req.now,
      }),
    };
  }
  if (result.ok) applyTtl(result.envelope, req.metadata, req.now);
  return result;
}

/** components-contrib NewCloudEventsEnvelope. */
export function newCloudEventsEnvelope(p: {
  id: string;
  source: string;
  type: string;
  subject: string;
  topic: string;
  pubsubName: string;
  dataContentType: string;
  data: Buffer;
  traceParent: string;
  traceState: string;
  now: Date;
}): GoObject {
  const dataContentType = p.dataContentType || DEFAULT_DATA_CONTENT_TYPE;
  let dataField = 'data';
  let data: GoValue;
  if (isJsonContentType(dataContentType)) {
    const parsed = parseFirstValue(p.data.toString('utf8'));
    data = parsed.ok ? parsed.value : p.data.toString('utf8');
  } else if (isBinaryContentType(dataContentType)) {
    data = p.data.toString('base64');
    dataField = 'data_base64';
  } else {
    data = p.data.toString('utf8');
  }
  const ce: GoObject = new Map<string, GoValue>([
    ['id', p.id || randomUUID()],
    ['specversion', SPEC_VERSION],
    ['datacontenttype', dataContentType],
    ['source', p.source || DEFAULT_SOURCE],
    ['type', p.type || DEFAULT_EVENT_TYPE],
    ['topic', p.topic],
    ['pubsubname', p.pubsubName],
    ['traceid', p.traceParent],
    ['traceparent', p.traceParent],
    ['tracestate', p.traceState],
    ['time', rfc3339(p.now)],
  ]);
  ce.set(dataField, data);
  if (p.subject !== '') ce.set('subject', p.subject);
  return ce;
}

/**
 * components-contrib FromCloudEvent: the publisher's own CloudEvent is kept; topic and
 * pubsubname are overwritten, time and the trace fields added when missing, source, type and
 * specversion defaulted. No id or datacontenttype is generated.
 */
function fromCloudEvent(req: EnvelopeRequest): EnvelopeResult {
  const parsed = parseFirstValue(req.body.toString('utf8'));
  if (!parsed.ok) return { ok: false, error: parsed.error };
  if (!isGoObject(parsed.value)) {
    return { ok: false, error: `json: cannot unmarshal ${goKind(parsed.value)} into Go value of type map[string]interface {}` };
  }
  const m = parsed.value;
  if (!m.has('time')) m.set('time', rfc3339(req.now));
  if (!m.has('traceid')) {
    m.set('traceid', req.traceParent);
    m.set('traceparent', req.traceParent);
    m.set('tracestate', req.traceState);
  }
  m.set('topic', req.topic);
  m.set('pubsubname', req.pubsubName);
  if (m.get('source') == null) m.set('source', DEFAULT_SOURCE);
  if (m.get('type') == null) m.set('type', DEFAULT_EVENT_TYPE);
  if (m.get('specversion') == null) m.set('specversion', SPEC_VERSION);
  return { ok: true, envelope: m };
}

/** ApplyMetadata: the in-memory component has no native TTL, so daprd writes `expiration`. */
function applyTtl(envelope: GoObject, metadata: Metadata, now: Date): void {
  const ttl = readTtlSeconds(metadata);
  if (ttl === undefined) return;
  const expires = new Date(Math.min(now.getTime() + ttl * 1000, 8.64e15));
  envelope.set('expiration', rfc3339(expires));
}

/** components-contrib FromRawPayload: what a raw-payload subscriber receives. */
export function fromRawPayload(data: Buffer, topic: string, pubsubName: string): GoObject {
  return new Map<string, GoValue>([
    ['id', randomUUID()],
    ['specversion', SPEC_VERSION],
    ['datacontenttype', 'application/octet-stream'],
    ['source', DEFAULT_SOURCE],
    ['type', DEFAULT_EVENT_TYPE],
    ['topic', topic],
    ['pubsubname', pubsubName],
    ['data_base64', data.toString('base64')],
  ]);
}

/** HasExpired: an `expiration` that parses as RFC3339 and lies in the past. */
export function hasExpired(event: unknown, now: Date): boolean {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return false;
  const expiration = (event as Record<string, unknown>).expiration;
  if (typeof expiration !== 'string' || expiration === '') return false;
  const at = Date.parse(expiration);
  return !Number.isNaN(at) && at < now.getTime();
}
