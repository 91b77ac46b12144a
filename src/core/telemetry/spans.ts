/**
 * The outbox's spans, after the OpenTelemetry messaging conventions:
 *
 * | span             | kind     | where                                   | parent / links                          |
 * |------------------|----------|-----------------------------------------|-----------------------------------------|
 * | `create <topic>` | PRODUCER | `bus.publish()`                         | the active span, else the request's or handler's trace; the row stores this span's context |
 * | `send <topic>`   | CLIENT   | each publish call (single or bulk)      | none; a link to each message's stored context |
 * | `process <topic>`| CONSUMER | the subscription router, around the handler | the delivery's traceparent              |
 *
 * Each hook returns at its first line when the API is not installed; with no SDK registered, its
 * spans are the API's no-op spans and the row keeps the trace it had.
 */
import type { Attributes, Link, Span } from '@opentelemetry/api';
import type { BulkPublishResult, OutboxMessage, Publisher } from '../../ports/publisher';
import { errorType, instruments, topicAttributes } from './instruments';
import { otel, SCOPE, type Otel } from './otel-api';
import { contextOf, currentHandlerTrace, formatTraceparent, MAX_TRACESTATE, parseTraceparent, runWithHandlerTrace, storable, type TraceHeaders } from './trace-context';

// SpanKind and SpanStatusCode values of the API (stable since 1.0).
const PRODUCER = 3;
const CLIENT = 2;
const CONSUMER = 4;
const ERROR = 2;

/**
 * Starts and ends a `create <topic>` span per message and returns the messages with its context
 * as their trace, the one the row stores and the subscriber continues. The parent is, in order:
 * a traceparent passed to publish() (`explicit`), the active span, the trace of the subscription
 * handler running, the message's own (the request's `traceparent` header).
 */
export function withCreateSpans(messages: OutboxMessage[], explicit: boolean): OutboxMessage[] {
  const handler = explicit ? undefined : storable(currentHandlerTrace());
  const api = otel();
  if (!api) return handler ? messages.map((m) => ({ ...m, ...handler })) : messages;
  const tracer = api.trace.getTracer(SCOPE);
  const active = api.context.active();
  const activeSpan = explicit ? undefined : api.trace.getSpan(active);
  return messages.map((m) => {
    const own = handler ?? m;
    const parent = activeSpan ? active : contextOf(api, own, active);
    const attributes = topicAttributes('create', m.pubsubName, m.topic);
    attributes['messaging.message.id'] = m.id;
    const span = tracer.startSpan(`create ${m.topic}`, { kind: PRODUCER, attributes }, parent);
    const recording = span.isRecording();
    span.end();
    if (!recording) return handler ? { ...m, ...handler } : m;
    const sc = span.spanContext();
    return { ...m, traceparent: formatTraceparent(sc), tracestate: (sc.traceState?.serialize() || own.tracestate || '').slice(0, MAX_TRACESTATE) || null };
  });
}

/**
 * The publisher with a `send <topic>` span, a duration and a count of sent messages around each
 * call. The publisher itself when the API is not installed.
 */
export function instrumentPublisher(publisher: Publisher): Publisher {
  const api = otel();
  if (!api) return publisher;
  return {
    pubsubName: publisher.pubsubName,
    publish: (m) => traceSend(api, [m], () => publisher.publish(m)),
    publishBulk: publisher.publishBulk ? (batch) => traceSend(api, batch, () => publisher.publishBulk!(batch)) : undefined,
  };
}

async function traceSend<T extends BulkPublishResult | void>(api: Otel, batch: readonly OutboxMessage[], call: () => Promise<T>): Promise<T> {
  const first = batch[0]!;
  // Metrics carry the topic's attributes only: an id or a count per data point would make a series per message.
  const attributes = topicAttributes('send', first.pubsubName, first.topic);
  const spanAttributes = { ...attributes, ...(batch.length > 1 ? { 'messaging.batch.message_count': batch.length } : { 'messaging.message.id': first.id }) };
  const links: Link[] = [];
  for (const m of batch) {
    const context = parseTraceparent(api, m.traceparent, m.tracestate);
    if (context) links.push({ context });
  }
  const span = api.trace.getTracer(SCOPE).startSpan(`send ${first.topic}`, { kind: CLIENT, attributes: spanAttributes, links, root: true });
  const metrics = instruments(api);
  const started = performance.now();
  let failure: string | undefined;
  try {
    const result = await call();
    const failed = result ? result.failed : [];
    if (failed.length > 0) {
      failure = errorType(failed[0]!.error);
      span.setStatus({ code: ERROR, message: `${failed.length} of ${batch.length} messages were not published` });
      for (const f of failed) metrics.sent.add(1, { ...attributes, 'error.type': errorType(f.error) });
    }
    metrics.sent.add(batch.length - failed.length, attributes);
    return result;
  } catch (err) {
    failure = errorType(err);
    endWithError(span, err);
    metrics.sent.add(batch.length, { ...attributes, 'error.type': failure });
    throw err;
  } finally {
    if (failure) span.setAttribute('error.type', failure);
    span.end();
    metrics.sendDuration.record((performance.now() - started) / 1000, failure ? { ...attributes, 'error.type': failure } : attributes);
  }
}

/** What the process span needs of a delivery (the router's DeliveryContext has it). */
export interface DeliveryFacts {
  id: string;
  topic: string;
  pubsubName: string;
  consumer?: string | undefined;
  event: { traceparent?: unknown; tracestate?: unknown };
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Runs a subscription handler in a `process <topic>` span whose parent is the delivery's trace
 * (the CloudEvent's traceparent, else the request's header), counts it and times it. Events the
 * handler publishes carry its trace forward, also without the API. A handler that throws, or
 * answers 'RETRY' or 'DROP', sets the span's status and `error.type`.
 */
export async function traceProcess<T>(delivery: DeliveryFacts, handler: () => Promise<T> | T): Promise<T> {
  const trace = deliveryTrace(delivery);
  const api = otel();
  if (!api) return runWithHandlerTrace(trace, handler);
  const attributes = topicAttributes('process', delivery.pubsubName, delivery.topic);
  if (delivery.consumer !== undefined) attributes['messaging.consumer.group.name'] = delivery.consumer;
  const parent = contextOf(api, trace, api.context.active());
  const span = api.trace.getTracer(SCOPE).startSpan(`process ${delivery.topic}`, { kind: CONSUMER, attributes: { ...attributes, 'messaging.message.id': delivery.id } }, parent);
  const carried = span.isRecording() ? { traceparent: formatTraceparent(span.spanContext()), tracestate: trace.tracestate } : trace;
  const metrics = instruments(api);
  const started = performance.now();
  let failure: string | undefined;
  try {
    const result = await api.context.with(api.trace.setSpan(parent, span), () => runWithHandlerTrace(carried, handler));
    if (result === 'RETRY' || result === 'DROP') {
      failure = result as string;
      span.setStatus({ code: ERROR, message: `the handler answered ${result}` });
    }
    return result;
  } catch (err) {
    failure = errorType(err);
    endWithError(span, err);
    throw err;
  } finally {
    const measured: Attributes = failure ? { ...attributes, 'error.type': failure } : attributes;
    if (failure) span.setAttribute('error.type', failure);
    span.end();
    metrics.consumed.add(1, measured);
    metrics.processDuration.record((performance.now() - started) / 1000, measured);
  }
}

/** Counts a delivery the inbox answered as a duplicate (its handler did not run). */
export function countDuplicate(delivery: Omit<DeliveryFacts, 'event' | 'headers' | 'id'>): void {
  const api = otel();
  if (!api) return;
  const attributes = topicAttributes('process', delivery.pubsubName, delivery.topic);
  if (delivery.consumer !== undefined) attributes['messaging.consumer.group.name'] = delivery.consumer;
  instruments(api).duplicates.add(1, attributes);
}

function deliveryTrace(delivery: DeliveryFacts): TraceHeaders {
  const { event, headers } = delivery;
  if (typeof event.traceparent === 'string') return { traceparent: event.traceparent, tracestate: typeof event.tracestate === 'string' ? event.tracestate : undefined };
  const header = headers.traceparent;
  const state = headers.tracestate;
  return { traceparent: typeof header === 'string' ? header : undefined, tracestate: typeof state === 'string' ? state : undefined };
}

function endWithError(span: Span, err: unknown): void {
  if (err instanceof Error) span.recordException(err);
  span.setStatus({ code: ERROR, message: err instanceof Error ? err.message : String(err) });
}
