import type { InboxStore } from '../../ports/inbox-store';
import type { OutboxStore } from '../../ports/outbox-store';
import type { Publisher } from '../../ports/publisher';
import type { Clock } from '../clock';
import type { Dispatcher } from '../dispatcher';
import type { OutboxEmitter } from '../events';
import type { Logger } from '../logger';
import type { ResolvedTuning } from '../options';

/** What the background processors work with. */
export interface ProcessorContext {
  store: OutboxStore;
  inbox?: InboxStore;
  dispatcher: Dispatcher;
  publisher: Publisher;
  tuning: ResolvedTuning;
  clock: Clock;
  logger: Logger;
  events: OutboxEmitter;
  /** Lock owner of the rows this process claims (the same name the dispatcher uses). */
  owner: string;
  random?: () => number;
}

/** The scheduled passes, by name (the names appear in logs and in `error` events). */
export type ProcessorName =
  | 'retry-by-local-queue'
  | 'retry-by-database'
  | 'delete-published-expired'
  | 'delete-local-queue-expired'
  | 'clean-inbox';

export const PROCESSOR_NAMES: readonly ProcessorName[] = [
  'retry-by-local-queue',
  'retry-by-database',
  'delete-published-expired',
  'delete-local-queue-expired',
  'clean-inbox',
];
