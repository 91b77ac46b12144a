/**
 * The transaction port: how the core opens, binds and ends database transactions without
 * knowing the ORM. The Sequelize adapter implements it.
 */
import type { StoreTransaction } from './outbox-store';

export interface TransactionPort {
  /** Opens a transaction for a unit of work. */
  begin(): Promise<StoreTransaction>;
  commit(tx: StoreTransaction): Promise<void>;
  rollback(tx: StoreTransaction): Promise<void>;
  /** Runs `fn` with `tx` as the ambient transaction that ORM calls join on their own. */
  bind<T>(tx: StoreTransaction, fn: () => T): T;
  /** The ambient transaction of the current async context (one the application opened), if any. */
  current(): StoreTransaction | undefined;
  /** Runs `fn` once `tx` has committed (never when it rolls back). */
  afterCommit(tx: StoreTransaction, fn: () => void): void;
}
