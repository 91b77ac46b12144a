/**
 * The inbox store port: remembers which (consumer, event id) pairs were handled, inside the
 * handler's own transaction, so that a redelivered event has no second effect.
 */
import type { StoreTransaction } from './outbox-store';

/** One inbox entry: an event id as one consumer handled it. */
export interface InboxKey {
  consumer: string;
  eventId: string;
}

export interface InboxStore {
  /**
   * Records that `consumer` handled `eventId`, in `tx`. Resolves true when this is the first
   * time, false when the pair was already recorded (a duplicate delivery).
   */
  record(consumer: string, eventId: string, tx: StoreTransaction, now: number): Promise<boolean>;
  /**
   * Records several distinct keys in `tx` at once (one statement where the database can tell
   * which rows it inserted). Resolves one flag per key, in order: true when recorded now, false
   * when already there. Optional: without it the router calls `record()` per key, in the same
   * transaction.
   */
  recordAll?(keys: readonly InboxKey[], tx: StoreTransaction, now: number): Promise<boolean[]>;
  /**
   * Deletes keys recorded in `tx` (a delivery whose handler failed after its group recorded it,
   * so that the redelivery runs the handler again). Optional: without it a failing handler rolls
   * its whole group back.
   */
  remove?(keys: readonly InboxKey[], tx: StoreTransaction): Promise<void>;
  /** Deletes up to `limit` entries recorded before `before` (epoch ms). Returns how many. */
  deleteOlderThan(before: number, limit: number): Promise<number>;
  /** How many entries the inbox holds. A store without it reports no size. */
  size?(): Promise<number>;
  /** One page of handled entries, by consumer then event id (keyset paging). */
  page?(query: InboxPageQuery): Promise<InboxPage>;
  /**
   * Each consumer's position in each ordering key. Optional: without it the router handles keyed
   * deliveries like unkeyed ones (in any order), and says so once in the log.
   */
  readonly keys?: InboxKeyStore;
}

/** A consumer's position in one ordering key. */
export interface KeyPosition {
  /** The last sequence handled or skipped; 0 before the first. */
  lastSequence: number;
  /** Since when (epoch ms) the key waits for `lastSequence + 1`, or null when it does not. */
  waitingSince: number | null;
}

/**
 * The receive side of ordering keys: one row per (consumer, ordering key), locked by the
 * transaction that handles the key's next event, so that the deliveries of one key take turns.
 */
export interface InboxKeyStore {
  /**
   * Creates the (consumer, key) row when it is missing (at position 0), locks it until `tx` ends
   * (a second transaction asking for it waits for the first one's COMMIT or ROLLBACK) and
   * resolves its position.
   */
  lock(consumer: string, key: string, tx: StoreTransaction, now: number): Promise<KeyPosition>;
  /** Sets the position of a row `tx` has locked. */
  set(consumer: string, key: string, position: KeyPosition, tx: StoreTransaction, now: number): Promise<void>;
  /** Whether the inbox holds (consumer, eventId), read in `tx`. */
  handled(consumer: string, eventId: string, tx: StoreTransaction): Promise<boolean>;
}

/** An inbox entry: `consumer` handled `eventId` at `handledTime` (epoch ms). */
export interface InboxEntry {
  consumer: string;
  eventId: string;
  handledTime: number;
}

export interface InboxPageQuery {
  /** Only this consumer's entries. */
  consumer?: string;
  /** The cursor: entries after this (consumer, event id), in that order. */
  after?: { consumer: string; eventId: string };
  limit: number;
}

export interface InboxPage {
  entries: InboxEntry[];
  /** The cursor of the next page, or null at the end. */
  next: { consumer: string; eventId: string } | null;
}
