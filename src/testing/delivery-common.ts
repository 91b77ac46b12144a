/**
 * What single and bulk deliveries share: reading the stored bytes as daprd's subscriber does,
 * route selection, the headers the sidecar sends, and the delivery record.
 */
import type { AttachedApp } from './broker';
import type { BrokerMessage, EmulatorState } from './emulator-state';
import { GoValue, isGoObject, parseFirstValue, toPlain } from './go-json';
import { DeliveryOutcome } from './records';
import { CompiledSubscription } from './subscriptions';

export type StoredEvent = { ok: true; value: GoValue; plain: unknown; eventId: string | undefined } | { ok: false; error: string };

/**
 * `json.Unmarshal(msg.Data, &cloudEvent)` into a map: the whole input must be one JSON object
 * (or null); anything else is "error deserializing cloud event".
 */
export function readStoredEvent(data: Buffer): StoredEvent {
  const text = data.toString('utf8');
  const parsed = parseFirstValue(text);
  if (!parsed.ok) return { ok: false, error: parsed.error === 'EOF' ? 'unexpected end of JSON input' : parsed.error };
  if (text.slice(parsed.end).trim() !== '') {
    return { ok: false, error: `invalid character ${JSON.stringify(text.slice(parsed.end).trim()[0])} after top-level value` };
  }
  if (parsed.value !== null && !isGoObject(parsed.value)) {
    return { ok: false, error: 'json: cannot unmarshal non-object into Go value of type map[string]interface {}' };
  }
  const plain = toPlain(parsed.value);
  return { ok: true, value: parsed.value, plain, eventId: eventIdOf(plain) };
}

export function eventIdOf(event: unknown): string | undefined {
  if (event === null || typeof event !== 'object') return undefined;
  const id = (event as Record<string, unknown>).id;
  return typeof id === 'string' ? id : undefined;
}

export type RouteChoice = { ok: true; path: string | undefined } | { ok: false; error: string };

/** daprd's findMatchingRoute: first rule whose match is true (or empty) wins; none = skip. */
export function findRoute(sub: CompiledSubscription, event: unknown): RouteChoice {
  for (let i = 0; i < sub.rules.length; i++) {
    const program = sub.programs[i];
    if (!program) return { ok: true, path: sub.rules[i]!.path };
    const result = program.evaluate(event);
    if (!result.ok) return { ok: false, error: result.error };
    if (result.value) return { ok: true, path: sub.rules[i]!.path };
  }
  return { ok: true, path: undefined };
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RESERVED = new Set(['content-type', 'content-length', 'host', 'connection', 'transfer-encoding', 'dapr-api-token', 'traceparent', 'tracestate']);

/**
 * Headers of a sidecar -> app delivery: the broker metadata (the in-memory component passes
 * the subscription's metadata, and daprd adds `pubsubName`), then the content type, trace
 * context and app API token.
 */
export function deliveryHeaders(
  app: AttachedApp,
  sub: CompiledSubscription,
  contentType: string,
  trace: { traceParent?: string; traceState?: string } = {},
): Record<string, string> {
  const headers: Record<string, string> = {};
  const add = (name: string, value: string): void => {
    const key = name.toLowerCase();
    if (!TOKEN.test(name) || RESERVED.has(key) || /[\u0000-\u0008\u000a-\u001f\u007f]/.test(value) || /[^\u0000-\u00ff]/.test(value)) return;
    headers[key] = value;
  };
  for (const [key, value] of Object.entries(sub.metadata)) add(key, value);
  add('pubsubName', sub.pubsubName);
  headers['content-type'] = contentType;
  if (trace.traceParent) headers.traceparent = trace.traceParent;
  if (trace.traceState) headers.tracestate = trace.traceState;
  if (app.appApiToken !== undefined) headers['dapr-api-token'] = app.appApiToken;
  return headers;
}

/** The trace context a delivery carries: the event's traceparent (else traceid) and tracestate. */
export function traceOf(event: unknown): { traceParent?: string; traceState?: string } {
  if (event === null || typeof event !== 'object') return {};
  const ce = event as Record<string, unknown>;
  const parent = typeof ce.traceparent === 'string' ? ce.traceparent : typeof ce.traceid === 'string' ? ce.traceid : undefined;
  const state = typeof ce.tracestate === 'string' ? ce.tracestate : undefined;
  return { traceParent: parent || undefined, traceState: state || undefined };
}

export function recordDelivery(
  core: EmulatorState,
  app: AttachedApp,
  msg: BrokerMessage,
  fields: {
    route: string;
    eventId: string | undefined;
    attempt: number;
    httpStatus: number | undefined;
    outcome: DeliveryOutcome;
    error?: string;
    entryId?: string;
    late?: boolean;
  },
): void {
  core.recorder.deliveries.push({
    appId: app.appId,
    pubsubName: msg.pubsubName,
    topic: msg.topic,
    route: fields.route,
    eventId: fields.eventId,
    messageId: msg.messageId,
    attempt: fields.attempt,
    httpStatus: fields.httpStatus,
    outcome: fields.outcome,
    ...(fields.error !== undefined ? { error: fields.error } : {}),
    at: core.now(),
    bulk: fields.entryId !== undefined,
    ...(fields.entryId !== undefined ? { entryId: fields.entryId } : {}),
    ...(fields.late ? { late: true as const } : {}),
  });
  core.recorder.trim();
}
