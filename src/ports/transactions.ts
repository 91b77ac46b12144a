/**
 * The transaction port: how the core and the subscription router open, bind and end database
 * transactions without knowing the ORM. The Sequelize adapter implements it.
 */
import type { StoreTransaction } from './outbox-store';

export interface TransactionPort {
  /** True when the database takes one writing transaction at a time (SQLite): open fewer at once. */
  readonly oneWriter?: boolean;
  /** How many transactions can be open at once (the connection pool's size), when known. */
  readonly concurrency?: number;
  /**
   * Opens a transaction for a unit of work. It may begin lazily (at its first query), so that a
   * unit of work that never touches the database costs nothing.
   */
  begin(): Promise<StoreTransaction>;
  /** Commits. Rejects when the database did not commit (the transaction is then finished). */
  commit(tx: StoreTransaction): Promise<void>;
  /** Rolls back; a finished transaction is left alone. */
  rollback(tx: StoreTransaction): Promise<void>;
  /**
   * Runs `fn` in a new transaction of its own, ambient for ORM calls inside `fn`: commits when it
   * resolves, rolls back when it rejects (and rejects with its error).
   */
  run<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /** Runs `fn` with `tx` as the ambient transaction that ORM calls join on their own. */
  bind<T>(tx: StoreTransaction, fn: () => T): T;
  /** Runs `fn` with no ambient transaction: ORM calls inside it run on their own. */
  detached<T>(fn: () => T): T;
  /** The ambient transaction of the current async context, if any. */
  current(): StoreTransaction | undefined;
  /**
   * Marks a savepoint in `tx` (which has begun); the function it resolves rolls `tx` back to it,
   * undoing only what ran since, and rejects when it cannot (the database rolled the whole
   * transaction back, as on a deadlock). Optional: without it the subscription router rolls a
   * delivery group back when one handler fails, and runs the others again.
   */
  savepoint?(tx: StoreTransaction): Promise<() => Promise<void>>;
  /** Runs `fn` once `tx` has committed (never when it rolls back). */
  afterCommit(tx: StoreTransaction, fn: () => void): void;
}
