import type { ProcessorContext } from './context';
import { safeEmit } from './pass';

/**
 * MASA's DeleteLocalQueueExpires: drops local-queue items whose lease ran out. Their rows are
 * safe in the table, due again, and another replica (or this one's database retry) may hold them
 * already; retrying them from memory as well would publish them twice. Returns how many.
 */
export async function deleteLocalQueueExpired(ctx: Pick<ProcessorContext, 'localQueue' | 'clock' | 'events' | 'logger'>): Promise<number> {
  const dropped = ctx.localQueue.expire(ctx.clock.now());
  if (dropped > 0) safeEmit(ctx, 'cleaned', { published: 0, inbox: 0, localQueue: dropped });
  return dropped;
}
