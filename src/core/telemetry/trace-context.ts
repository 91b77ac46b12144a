import { AsyncLocalStorage } from 'node:async_hooks';
import type { Context, SpanContext } from '@opentelemetry/api';
import type { Otel } from './otel-api';

/** W3C trace context as the outbox row and the CloudEvent carry it. */
export interface TraceHeaders {
  traceparent?: string | null;
  tracestate?: string | null;
}

/**
 * The trace of the subscription handler running in this async context: events it publishes
 * carry it forward. Kept here rather than only in OpenTelemetry's context, which propagates
 * nothing unless the application registered a context manager.
 */
const handlerTrace = new AsyncLocalStorage<TraceHeaders>();

/** Runs `fn` with `trace` as the handler's trace (see currentHandlerTrace). */
export function runWithHandlerTrace<T>(trace: TraceHeaders, fn: () => T): T {
  return handlerTrace.run(trace, fn);
}

/** The trace of the handler running in this async context, if any. */
export function currentHandlerTrace(): TraceHeaders | undefined {
  return handlerTrace.getStore();
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const INVALID_TRACE = /^0+$/;

/** The longest tracestate a row keeps (the W3C limit is 32 entries; the column holds 512). */
export const MAX_TRACESTATE = 512;

/** `trace` as a row can keep it: a well-formed traceparent (else none) and its tracestate, cut to the column. */
export function storable(trace: TraceHeaders | undefined): { traceparent: string; tracestate: string | null } | undefined {
  const traceparent = trace?.traceparent;
  if (!traceparent || !TRACEPARENT.test(traceparent)) return undefined;
  return { traceparent, tracestate: trace.tracestate ? trace.tracestate.slice(0, MAX_TRACESTATE) : null };
}

/** The span context a traceparent names, or undefined for a missing, malformed or all-zero one. */
export function parseTraceparent(api: Otel, traceparent: string | null | undefined, tracestate?: string | null): SpanContext | undefined {
  if (!traceparent) return undefined;
  const m = TRACEPARENT.exec(traceparent);
  if (!m || INVALID_TRACE.test(m[1]!) || INVALID_TRACE.test(m[2]!)) return undefined;
  const sc: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
  if (tracestate && typeof api.createTraceState === 'function') sc.traceState = api.createTraceState(tracestate);
  return sc;
}

/** The traceparent of a span context: version 00, its ids and flags. */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * `base` with the span `trace` names as its parent. When it names none, `base` without a span:
 * a span started in it begins a trace of its own.
 */
export function contextOf(api: Otel, trace: TraceHeaders | undefined, base: Context): Context {
  const sc = parseTraceparent(api, trace?.traceparent, trace?.tracestate);
  return sc ? api.trace.setSpanContext(base, sc) : api.trace.deleteSpan(base);
}
