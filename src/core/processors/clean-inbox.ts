import type { ProcessorContext } from './context';
import { deleteInBatches } from './batch-delete';
import { ProcessorError, safeEmit } from './pass';

/**
 * Deletes inbox entries (handled event ids) older than `inboxExpireTime` seconds, in batches of
 * `deleteBatchCount`, until a short batch. An event redelivered after that is no longer
 * recognised as a repeat, so keep `inboxExpireTime` well above the broker's redelivery window.
 * Returns how many.
 */
export async function cleanInbox(ctx: Pick<ProcessorContext, 'inbox' | 'clock' | 'tuning' | 'events' | 'logger'>, halted: () => boolean): Promise<number> {
  const { inbox, clock, tuning } = ctx;
  if (!inbox) return 0;
  const before = clock.now() - tuning.inboxExpireTime * 1000;
  const limit = tuning.deleteBatchCount;
  const { total, error } = await deleteInBatches((n) => inbox.deleteOlderThan(before, n), limit, halted);
  if (total > 0) safeEmit(ctx, 'cleaned', { published: 0, inbox: total, localQueue: 0 });
  if (error) throw new ProcessorError('clean-inbox', 'could not delete expired inbox entries', error, { batchSize: limit, before, deletedSoFar: total });
  return total;
}
