import type { ProcessorContext } from './context';
import { deleteInBatches } from './batch-delete';
import { ProcessorError, safeEmit } from './pass';

/**
 * MASA's DeletePublishedExpireEvent: deletes Published rows last modified more than
 * `publishedExpireTime` seconds ago, `deleteBatchCount` rows per statement, batch after batch
 * until a short batch. Each batch is a plain read of the (state, modification_time) index and a
 * delete by primary key that re-checks the state: short row locks only, nothing held between
 * batches. Failed rows, terminal ones included, are never deleted here. Returns how many.
 */
export async function deletePublishedExpired(ctx: Pick<ProcessorContext, 'store' | 'clock' | 'tuning' | 'events' | 'logger'>, halted: () => boolean): Promise<number> {
  const { store, clock, tuning } = ctx;
  const before = clock.now() - tuning.publishedExpireTime * 1000;
  const limit = tuning.deleteBatchCount;
  const { total, error } = await deleteInBatches((n) => store.deletePublished(before, n), limit, halted);
  if (total > 0) safeEmit(ctx, 'cleaned', { published: total, inbox: 0, localQueue: 0 });
  if (error) throw new ProcessorError('delete-published-expired', 'could not delete expired published rows', error, { batchSize: limit, before, deletedSoFar: total });
  return total;
}
