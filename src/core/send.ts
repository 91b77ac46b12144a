import type { OutboxMessage, Publisher } from '../ports/publisher';

export interface SendOutcome {
  published: OutboxMessage[];
  failed: Array<{ message: OutboxMessage; error: Error }>;
}

/**
 * Hands messages to the publisher: grouped by pubsub and topic, in bulk calls of at most
 * `batchSize` where the publisher has a bulk API and a group has more than one message, one by
 * one otherwise. Never throws: every message ends in `published` or `failed`.
 */
export async function sendMessages(
  publisher: Publisher,
  messages: readonly OutboxMessage[],
  options: { bulk: boolean; batchSize: number },
): Promise<SendOutcome> {
  const outcome: SendOutcome = { published: [], failed: [] };
  const single = (m: OutboxMessage) =>
    publisher.publish(m).then(
      () => void outcome.published.push(m),
      (err: unknown) => void outcome.failed.push({ message: m, error: asError(err) }),
    );
  if (!options.bulk || !publisher.publishBulk || messages.length < 2) {
    await Promise.all(messages.map(single));
    return outcome;
  }
  const groups = new Map<string, OutboxMessage[]>();
  for (const m of messages) {
    const key = `${m.pubsubName}\u0000${m.topic}`;
    const group = groups.get(key);
    if (group) group.push(m);
    else groups.set(key, [m]);
  }
  const work: Promise<void>[] = [];
  for (const group of groups.values()) {
    for (let i = 0; i < group.length; i += options.batchSize) {
      const batch = group.slice(i, i + options.batchSize);
      if (batch.length === 1) {
        work.push(single(batch[0]!));
        continue;
      }
      work.push(
        publisher.publishBulk(batch).then(
          (result) => {
            const failed = new Map(result.failed.map((f) => [f.id, f.error]));
            for (const m of batch) {
              const error = failed.get(m.id);
              if (error) outcome.failed.push({ message: m, error });
              else outcome.published.push(m);
            }
          },
          (err: unknown) => {
            for (const m of batch) outcome.failed.push({ message: m, error: asError(err) });
          },
        ),
      );
    }
  }
  await Promise.all(work);
  return outcome;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
