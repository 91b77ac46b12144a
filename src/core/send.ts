import { PublishError } from '../errors';
import type { OutboxMessage, Publisher } from '../ports/publisher';
import type { ResolvedTuning } from './options';
import { instrumentPublisher } from './telemetry/spans';

export interface SendOutcome {
  published: OutboxMessage[];
  failed: Array<{ message: OutboxMessage; error: Error }>;
}

/**
 * What one message adds to a bulk request besides its JSON: the entry and the CloudEvent
 * wrapped around it (ids up to 64 characters, two traceparents, a tracestate up to 512).
 */
export const BULK_ENTRY_OVERHEAD_BYTES = 1024;

/** A message's share of a bulk request, bytes: its JSON plus the entry around it. */
export function bulkEntryBytes(m: OutboxMessage): number {
  return Buffer.byteLength(m.content, 'utf8') + BULK_ENTRY_OVERHEAD_BYTES;
}

/**
 * Hands messages to the publisher: grouped by pubsub and topic, in bulk calls of at most
 * `batchSize` messages and `maxBatchBytes` (see bulkEntryBytes) where the publisher has a bulk
 * API and a group has more than one message, one by one otherwise. A message larger than the
 * byte budget on its own goes alone, and so does every keyed event. A bulk call the broker
 * refuses as too large (413) is split in halves until it fits, so that only a message too large
 * by itself fails, and fails alone.
 * Never throws: every message ends in `published` or `failed`.
 */
export async function sendMessages(
  publisher: Publisher,
  messages: readonly OutboxMessage[],
  tuning: Pick<ResolvedTuning, 'bulk' | 'batchSize' | 'maxBatchBytes'>,
): Promise<SendOutcome> {
  publisher = instrumentPublisher(publisher);
  const outcome: SendOutcome = { published: [], failed: [] };
  const single = (m: OutboxMessage) =>
    publisher.publish(m).then(
      () => void outcome.published.push(m),
      (err: unknown) => void outcome.failed.push({ message: m, error: asError(err) }),
    );
  const bulk = async (batch: readonly OutboxMessage[]): Promise<void> => {
    if (batch.length === 1) return single(batch[0]!);
    try {
      const result = await publisher.publishBulk!(batch);
      const failed = new Map(result.failed.map((f) => [f.id, f.error]));
      for (const m of batch) {
        const error = failed.get(m.id);
        if (error) outcome.failed.push({ message: m, error });
        else outcome.published.push(m);
      }
    } catch (err) {
      if (err instanceof PublishError && err.status === 413) {
        const half = Math.ceil(batch.length / 2);
        await Promise.all([bulk(batch.slice(0, half)), bulk(batch.slice(half))]);
        return;
      }
      for (const m of batch) outcome.failed.push({ message: m, error: asError(err) });
    }
  };
  if (!tuning.bulk || !publisher.publishBulk || messages.length < 2) {
    await Promise.all(messages.map(single));
    return outcome;
  }
  const groups = new Map<string, OutboxMessage[]>();
  const work: Promise<void>[] = [];
  for (const m of messages) {
    // A bulk call promises no order among its entries: a keyed event always goes on its own.
    if (m.orderingKey != null) {
      work.push(single(m));
      continue;
    }
    const key = `${m.pubsubName}\u0000${m.topic}`;
    const group = groups.get(key);
    if (group) group.push(m);
    else groups.set(key, [m]);
  }
  for (const group of groups.values()) {
    for (const batch of batchesOf(group, tuning.batchSize, tuning.maxBatchBytes)) work.push(bulk(batch));
  }
  await Promise.all(work);
  return outcome;
}

/** Consecutive batches of at most `count` messages and `bytes` (a larger message alone). */
function batchesOf(group: readonly OutboxMessage[], count: number, bytes: number): OutboxMessage[][] {
  const batches: OutboxMessage[][] = [];
  let current: OutboxMessage[] = [];
  let size = 0;
  for (const m of group) {
    const own = bulkEntryBytes(m);
    if (current.length > 0 && (current.length >= count || size + own > bytes)) {
      batches.push(current);
      current = [];
      size = 0;
    }
    current.push(m);
    size += own;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
