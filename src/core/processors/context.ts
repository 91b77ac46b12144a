import type { InboxStore } from '../../ports/inbox-store';
import type { Dispatcher, DispatcherParts } from '../dispatcher';

/**
 * What the background processors work with: the dispatcher's dependencies (with the local retry
 * queue and the failure rules), the dispatcher and the inbox.
 */
export interface ProcessorContext extends DispatcherParts {
  inbox?: InboxStore;
  dispatcher: Dispatcher;
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
