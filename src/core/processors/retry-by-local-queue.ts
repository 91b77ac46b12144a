import type { ProcessorContext } from './context';

/**
 * The local-queue retry (MASA's RetryByLocalQueue): tries the failed post-commit publishes held
 * in memory again, while their lease lasts; those that used up `localRetryTimes` go to the
 * database retry with a backoff. The dispatcher does the work (and never overlaps it).
 * Returns how many items left the queue (published, or handed to the database retry).
 */
export async function retryByLocalQueue(ctx: Pick<ProcessorContext, 'dispatcher' | 'localQueue'>): Promise<number> {
  const queue = ctx.localQueue;
  if (queue.size === 0) return 0;
  const before = queue.ids();
  await ctx.dispatcher.retryLocalQueue();
  let left = 0;
  for (const id of before) if (!queue.has(id)) left += 1;
  return left;
}
