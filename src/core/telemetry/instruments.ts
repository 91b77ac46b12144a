import type { Attributes, Counter, Histogram, Meter, MeterProvider } from '@opentelemetry/api';
import { SCOPE, type Otel } from './otel-api';

/** Metric names (OpenTelemetry messaging conventions, and the outbox's own under `outbox.`). */
export const METRICS = {
  sent: 'messaging.client.sent.messages',
  consumed: 'messaging.client.consumed.messages',
  sendDuration: 'messaging.client.operation.duration',
  processDuration: 'messaging.process.duration',
  duplicates: 'outbox.inbox.duplicates',
  messages: 'outbox.messages',
  oldestPendingAge: 'outbox.oldest_pending.age',
  terminalFailures: 'outbox.terminal_failures',
  inboxSize: 'outbox.inbox.size',
} as const;

/** The conventions' advice for messaging durations, seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

export interface Instruments {
  readonly provider: MeterProvider;
  readonly meter: Meter;
  readonly sent: Counter;
  readonly consumed: Counter;
  readonly duplicates: Counter;
  readonly sendDuration: Histogram;
  readonly processDuration: Histogram;
}

let cached: Instruments | undefined;

/**
 * The counters and histograms on the global meter provider. Built again when the application
 * registers another provider (the API has no proxy for meters, unlike tracers), so a provider
 * registered after the outbox was created still gets them.
 */
export function instruments(api: Otel): Instruments {
  const provider = api.metrics.getMeterProvider();
  if (cached?.provider === provider) return cached;
  const meter = provider.getMeter(SCOPE);
  const duration = (name: string, description: string) =>
    meter.createHistogram(name, { description, unit: 's', advice: { explicitBucketBoundaries: DURATION_BUCKETS } });
  cached = {
    provider,
    meter,
    sent: meter.createCounter(METRICS.sent, { description: 'Messages the outbox attempted to publish', unit: '{message}' }),
    consumed: meter.createCounter(METRICS.consumed, { description: 'Deliveries handed to a subscription handler', unit: '{message}' }),
    duplicates: meter.createCounter(METRICS.duplicates, { description: 'Deliveries the inbox answered as duplicates, without running the handler', unit: '{message}' }),
    sendDuration: duration(METRICS.sendDuration, 'Duration of one publish call to the sidecar (single or bulk)'),
    processDuration: duration(METRICS.processDuration, 'Duration of a subscription handler'),
  };
  return cached;
}

/** The low-cardinality class of an error, for `error.type`. */
export function errorType(err: unknown): string {
  if (err instanceof Error) return err.name && err.name !== 'Error' ? err.name : err.constructor?.name || 'Error';
  return '_OTHER';
}

/** Attributes every messaging span and metric of one topic carries. */
export function topicAttributes(operation: 'create' | 'send' | 'process', pubsubName: string, topic: string): Attributes {
  return {
    'messaging.system': 'dapr',
    'messaging.operation.name': operation,
    'messaging.operation.type': operation,
    'messaging.destination.name': topic,
    'dapr.pubsub.name': pubsubName,
  };
}
