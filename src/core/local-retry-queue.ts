import type { OutboxMessage } from '../ports/publisher';

/** A failed post-commit publish waiting for an in-memory retry. */
export interface LocalItem {
  readonly message: OutboxMessage;
  /** In-memory retries so far. */
  retries: number;
  /** Until when this process holds the row (epoch ms); after that it belongs to the database retry. */
  leaseUntil: number;
}

/**
 * MASA's local retry queue: failed post-commit publishes retried from memory for a short while
 * (`localRetryTimes`), as long as this process holds their rows. The rows are safe in the table
 * all along; the queue only saves the database retry a claim for failures that pass quickly.
 */
export class LocalRetryQueue {
  private readonly items = new Map<string, LocalItem>();

  get size(): number {
    return this.items.size;
  }

  /** Queues a message whose row this process holds until `leaseUntil`. */
  add(message: OutboxMessage, leaseUntil: number): void {
    this.items.set(message.id, { message, retries: 0, leaseUntil });
  }

  get(id: string): LocalItem | undefined {
    return this.items.get(id);
  }

  has(id: string): boolean {
    return this.items.has(id);
  }

  /** The event ids queued now. */
  ids(): string[] {
    return [...this.items.keys()];
  }

  /** The items to retry at `now`: those whose lease still runs (they stay queued). */
  take(now: number): LocalItem[] {
    return [...this.items.values()].filter((i) => i.leaseUntil > now);
  }

  /** Forgets an item: published, handed to the database retry, or claimed by another process. */
  remove(id: string): void {
    this.items.delete(id);
  }

  /**
   * Drops the items whose lease ran out at `now` (their rows are due again, and another replica,
   * or this one's database retry, may hold them already). Returns how many.
   */
  expire(now: number): number {
    let dropped = 0;
    for (const [id, item] of this.items) {
      if (item.leaseUntil <= now) {
        this.items.delete(id);
        dropped += 1;
      }
    }
    return dropped;
  }

  /** Empties the queue and returns the ids it held, to give their rows back to the database retry. */
  release(): string[] {
    const ids = [...this.items.keys()];
    this.items.clear();
    return ids;
  }
}
