/**
 * The OpenTelemetry API, an optional peer dependency. It is looked up once, on first use, and
 * only when installed: without it every telemetry hook returns at its first line. With it and no
 * SDK registered, the API hands out no-op tracers and meters, so the hooks cost a few no-op calls.
 */
import type * as OtelApi from '@opentelemetry/api';

export type Otel = typeof OtelApi;

let resolved: Otel | null | undefined;

/** The API when it is installed (version 1.3 or later, the first with metrics), else null. */
export function otel(): Otel | null {
  if (resolved === undefined) {
    try {
      const api = require('@opentelemetry/api') as Otel;
      resolved = api && typeof api.trace?.getTracer === 'function' && typeof api.metrics?.getMeter === 'function' ? api : null;
    } catch {
      resolved = null;
    }
  }
  return resolved;
}

/**
 * Replaces the looked-up API: null acts as if it were not installed, undefined looks it up again.
 * For the benchmark that compares both in one process; not part of the public API.
 */
export function useOtelApi(api: Otel | null | undefined): void {
  resolved = api;
}

/** The instrumentation scope of the library's tracer and meter. */
export const SCOPE = 'dapr-outbox';
