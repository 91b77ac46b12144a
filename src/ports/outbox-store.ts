/**
 * The outbox store port: everything the core needs from the outbox table. The Sequelize store
 * implements it for MySQL/MariaDB and SQLite; another store implements these methods.
 */
import type { OutboxMessage } from './publisher';

/** Outbox row states; 0-3 keep MASA's meaning. A terminal failure is PublishedFailed with no next attempt. */
export const EventState = {
  NotPublished: 0,
  InProgress: 1,
  Published: 2,
  PublishedFailed: 3,
} as const;
export type EventState = (typeof EventState)[keyof typeof EventState];

/** A row of the outbox table. Times are epoch milliseconds. */
export interface OutboxRecord extends OutboxMessage {
  readonly rowId: number;
  readonly state: EventState;
  readonly timesSent: number;
  readonly modificationTime: number;
  readonly nextAttemptTime: number | null;
  readonly lockOwner: string | null;
  readonly lockedUntil: number | null;
  readonly rowVersion: number;
  readonly lastError: string | null;
}

/** A transaction handle of the store's own kind (a Sequelize Transaction for the Sequelize store). */
export type StoreTransaction = unknown;

/** Which rows a manual republish concerns. */
export interface RepublishFilter {
  ids?: readonly string[];
  topic?: string;
  /** Only rows whose last modification is at or before this time (epoch ms). */
  before?: number;
  /** Only rows whose last modification is at or after this time (epoch ms). */
  since?: number;
}

/**
 * One page of the outbox, newest row first, for inspection (the admin API). Paged by keyset on
 * the row id, never by OFFSET, so every page costs the same however deep it is.
 */
export interface EventPageQuery {
  /** Only rows in this state; 'terminal' is PublishedFailed with no attempt to come. */
  state?: EventState | 'terminal';
  /** Only rows of this topic (exact). */
  topic?: string;
  /**
   * The event id (exact, looked up on the first page only), or text the content contains
   * (a LIKE in which % and _ stand for themselves).
   */
  q?: string;
  /** The cursor: only rows whose row id is below it (the `next` of the previous page). */
  before?: number;
  /** Rows per page. */
  limit: number;
  /**
   * With a filter (`state`, `topic` or `q`), how many row ids one page reads at most: a page of a
   * rare state, topic or text may hold fewer than `limit` rows and still have a `next`, but no
   * page reads the whole table.
   */
  scanLimit: number;
}

/** A row as a list shows it: the content cut to a preview. Times are epoch milliseconds. */
export interface OutboxRowSummary {
  readonly rowId: number;
  readonly id: string;
  readonly eventTypeName: string;
  readonly topic: string;
  readonly pubsubName: string;
  readonly state: EventState;
  /** State PublishedFailed with no attempt to come. */
  readonly terminal: boolean;
  readonly timesSent: number;
  readonly creationTime: number;
  readonly modificationTime: number;
  readonly nextAttemptTime: number | null;
  /** The first characters of the content (PREVIEW_CHARS). */
  readonly preview: string;
  /** The first characters of the last error, or null. */
  readonly lastError: string | null;
}

export interface EventPage {
  rows: OutboxRowSummary[];
  /** The cursor of the next page (pass it as `before`), or null at the end of the table. */
  next: number | null;
}

export interface FailedMark {
  readonly id: string;
  readonly error: string;
  /** When the next attempt may run (epoch ms), or null for a terminal failure. */
  readonly nextAttemptTime: number | null;
}

export interface OutboxStore {
  /**
   * Writes rows in the given transaction, in one statement where the database allows. The rows
   * are leased to `owner` until `leaseUntil`, so that no processor takes them while the committer
   * dispatches them. `now` (epoch ms, on the database's timeline) is their modification time.
   */
  insert(rows: readonly OutboxMessage[], tx: StoreTransaction | null, owner: string, leaseUntil: number, now: number): Promise<void>;
  /**
   * Claims up to `limit` rows that are due (next attempt time <= now): marks them InProgress,
   * leased to `owner` until `leaseUntil`, counts an attempt, and returns them. Safe with many
   * concurrent claimers: a row goes to one claimer only.
   */
  claimDue(limit: number, now: number, owner: string, leaseUntil: number): Promise<OutboxRecord[]>;
  /** Marks rows Published (by event id). Keyed rows go through markPublishedInOrder instead. */
  markPublished(ids: readonly string[], now: number): Promise<void>;
  /**
   * Marks keyed rows Published (see OutboxMessage.orderingKey) and moves each key on: the next
   * row of the key, if it is written and waiting for its turn, is leased to `owner` until
   * `leaseUntil` (an attempt counted) and returned, for `owner` to publish next. A row whose key
   * already moved past it (published again after another process took it over) moves nothing.
   * Optional: a store without it takes no ordering keys (`bus.publish` refuses them).
   *
   * With ordering keys, `insert` also gives each keyed row its `sequence`, in the writing
   * transaction, and sets `waiting` on a row whose key has an earlier row still to publish: such a
   * row has no next attempt time (no processor takes it) until the publish before it frees it.
   */
  markPublishedInOrder?(messages: readonly OutboxMessage[], owner: string, leaseUntil: number, now: number): Promise<OutboxRecord[]>;
  /** Marks rows failed, each with its next attempt time, where `owner` still holds them. */
  markFailed(marks: readonly FailedMark[], owner: string, now: number): Promise<void>;
  /**
   * Extends the lease of rows `owner` holds, and resolves with the ids it still holds (not
   * Published, not claimed by another owner since): only those may be published by `owner`.
   */
  extendLease(ids: readonly string[], owner: string, leaseUntil: number, now: number): Promise<string[]>;
  /**
   * The relay under row locks, for databases with SKIP LOCKED: in one transaction, locks up to
   * `limit` due rows (skipping rows another transaction holds), hands them to `send`, and writes
   * the outcome it returns: Published, or failed with the next attempt time (null: terminal).
   * Each row written counts one attempt; a row `send` leaves out is left as it was, uncounted.
   * One UPDATE per row, and no lease: if the process dies, the transaction rolls back and the
   * rows are due again; if it freezes, `options.idleLimit` bounds how long its locks last.
   * Resolves with how many rows were locked, or null where the database has no SKIP LOCKED (the
   * relay then claims with leases through `claimDue`).
   */
  relayLocked?(
    limit: number,
    now: number,
    send: (rows: OutboxRecord[]) => Promise<LockedBatchOutcome>,
    options?: RelayLockedOptions,
  ): Promise<number | null>;
  /**
   * Gives rows `owner` holds back to the processors, due at once. With `undoAttempt`, the attempt
   * their claim counted is taken back (they were never handed to the publisher).
   */
  release(ids: readonly string[], owner: string, now: number, options?: ReleaseOptions): Promise<void>;
  /** Deletes up to `limit` Published rows last modified before `before`. Returns how many. */
  deletePublished(before: number, limit: number): Promise<number>;
  /** Makes terminal-failed rows due again. Returns how many. */
  republish(filter: RepublishFilter, now: number): Promise<number>;
  /** Reads rows by event id (for inspection and tests). */
  find(ids: readonly string[]): Promise<OutboxRecord[]>;
  /** One page of rows, newest first (see EventPageQuery). A store without it has no events list. */
  page?(query: EventPageQuery): Promise<EventPage>;
  /**
   * Deletes terminal failures (PublishedFailed with no next attempt) matching the filter; no other
   * row is ever deleted by it. Returns how many.
   */
  deleteTerminalFailed?(filter: RepublishFilter): Promise<number>;
  /** Counts rows per state; terminal failures are counted apart. */
  stats(): Promise<OutboxStats>;
  /**
   * The creation time (epoch ms) of the oldest row still to be published (not published, not
   * terminal), or null when there is none. A store without it reports no age.
   */
  oldestPendingTime?(): Promise<number | null>;
  /**
   * The database's current time, epoch ms. Leases and due times are compared by the database, so
   * the core keeps its clock on this timeline rather than each replica's (whose clocks may
   * differ). A store without it leaves the core on the process clock.
   */
  currentTime?(): Promise<number>;
}

export interface RelayLockedOptions {
  /**
   * Seconds the transaction may sit idle (waiting for `send`) before the database ends its
   * connection, which rolls it back and frees its rows for other relays: what a lease is to
   * `claimDue`, for a process that freezes while its batch is out. Unset: the database's own
   * idle limit, if any.
   */
  readonly idleLimit?: number;
}

/** What `relayLocked`'s sender did with the rows it was given. */
export interface LockedBatchOutcome {
  /** When the outcome was known (epoch ms): the modification time written. */
  readonly now: number;
  /** Event ids published. */
  readonly published: readonly string[];
  /** Failed rows, with their next attempt time (null for a terminal failure). */
  readonly failed: readonly FailedMark[];
}

export interface ReleaseOptions {
  /**
   * The rows were claimed but never published: take back the attempt the claim counted, and the
   * state (NotPublished, or PublishedFailed for a row with an error recorded).
   */
  undoAttempt?: boolean;
}

export interface OutboxStats {
  notPublished: number;
  inProgress: number;
  published: number;
  publishedFailed: number;
  terminalFailed: number;
}

/** What an operator looks at first: the counts, the backlog and its age, the inbox size. */
export interface OutboxOverview extends OutboxStats {
  /** Rows still to be published: not published, in progress, or failed with a retry to come. */
  backlog: number;
  /** Creation time (epoch ms) of the oldest row in the backlog; null when it is empty or the store cannot tell. */
  oldestPendingTime: number | null;
  /** Age of that row in ms on the database clock; null as above. */
  oldestPendingAgeMs: number | null;
  /** Inbox entries; null without an inbox, or with a store that cannot tell. */
  inboxSize: number | null;
}
