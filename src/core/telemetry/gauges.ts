import type { BatchObservableResult } from '@opentelemetry/api';
import type { OutboxOverview } from '../../ports/outbox-store';
import { instruments, METRICS } from './instruments';
import { otel } from './otel-api';

/**
 * Registers the outbox's observable gauges on the global meter provider: rows by state, the age
 * of the oldest unpublished row, terminal failures and the inbox size. Every collection reads
 * `overview` (a cached read: see OverviewCache), never the database by itself. Returns what
 * unregisters them. Register the SDK's meter provider before creating the outbox.
 */
export function registerOverviewGauges(overview: () => Promise<OutboxOverview>, onError: (err: unknown) => void): () => void {
  const api = otel();
  if (!api) return () => {};
  const { meter } = instruments(api);
  const messages = meter.createObservableGauge(METRICS.messages, { description: 'Outbox rows by state', unit: '{message}' });
  const age = meter.createObservableGauge(METRICS.oldestPendingAge, { description: 'Age of the oldest row still to be published (0 when none), on the database clock', unit: 's' });
  const terminal = meter.createObservableGauge(METRICS.terminalFailures, { description: 'Rows that used up their attempts (kept until republished)', unit: '{message}' });
  const inbox = meter.createObservableGauge(METRICS.inboxSize, { description: 'Inbox entries (handled event ids kept for de-duplication)', unit: '{entry}' });
  const observables = [messages, age, terminal, inbox];
  const callback = async (result: BatchObservableResult): Promise<void> => {
    let o: OutboxOverview;
    try {
      o = await overview();
    } catch (err) {
      // A scrape during a database outage reports nothing rather than stale or zero counts.
      onError(err);
      return;
    }
    result.observe(messages, o.notPublished, { 'outbox.state': 'not_published' });
    result.observe(messages, o.inProgress, { 'outbox.state': 'in_progress' });
    result.observe(messages, o.published, { 'outbox.state': 'published' });
    result.observe(messages, o.publishedFailed, { 'outbox.state': 'published_failed' });
    result.observe(messages, o.terminalFailed, { 'outbox.state': 'terminal_failed' });
    if (o.oldestPendingAgeMs !== null) result.observe(age, o.oldestPendingAgeMs / 1000);
    else if (o.backlog === 0) result.observe(age, 0);
    result.observe(terminal, o.terminalFailed);
    if (o.inboxSize !== null) result.observe(inbox, o.inboxSize);
  };
  meter.addBatchObservableCallback(callback, observables);
  return () => meter.removeBatchObservableCallback(callback, observables);
}
