import type { ProcessorContext } from './context';
import { breather } from './delete-published-expired';
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
  let total = 0;
  try {
    for (;;) {
      const deleted = await inbox.deleteOlderThan(before, limit);
      total += deleted;
      if (deleted < limit || halted()) break;
      await breather();
    }
  } catch (err) {
    throw new ProcessorError('clean-inbox', 'could not delete expired inbox entries', err, { batchSize: limit, before, deletedSoFar: total });
  } finally {
    if (total > 0) safeEmit(ctx, 'cleaned', { published: 0, inbox: total, localQueue: 0 });
  }
  return total;
}
