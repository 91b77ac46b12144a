import type { Sequelize, Transaction } from 'sequelize';
import type { TransactionPort } from '../../ports/transactions';
import { commitTransaction } from './commit';
import { deferredTransaction } from './deferred-transaction';
import { currentTransaction, installTransactionContext, runWithTransaction } from './transaction-context';

/** Savepoint names: unique in the process, so never reused within a transaction. */
let savepoints = 0;

/**
 * The transaction port on Sequelize, with the ambient transaction on AsyncLocalStorage.
 * Transactions begin at their first query (see deferred-transaction.ts): a unit of work that
 * never touches the database costs no connection, and on SQLite holds no write lock.
 */
export class SequelizeTransactions implements TransactionPort {
  readonly oneWriter: boolean;
  readonly concurrency: number;

  constructor(readonly sequelize: Sequelize) {
    installTransactionContext(sequelize);
    this.oneWriter = sequelize.getDialect() === 'sqlite';
    // Sequelize's pool default is 5 connections.
    const max = (sequelize as unknown as { options?: { pool?: { max?: unknown } } }).options?.pool?.max;
    this.concurrency = typeof max === 'number' && max >= 1 ? Math.floor(max) : 5;
  }

  async begin(): Promise<Transaction> {
    return deferredTransaction(this.sequelize);
  }

  async commit(tx: unknown): Promise<void> {
    await commitTransaction(tx as Transaction);
  }

  async rollback(tx: unknown): Promise<void> {
    const t = tx as Transaction & { finished?: string };
    if (!t.finished) await t.rollback();
  }

  async run<T>(fn: (tx: unknown) => Promise<T>): Promise<T> {
    return inTransaction(this.sequelize, (tx) => runWithTransaction(this.sequelize, tx, () => fn(tx)));
  }

  bind<T>(tx: unknown, fn: () => T): T {
    return runWithTransaction(this.sequelize, tx as Transaction, fn);
  }

  detached<T>(fn: () => T): T {
    return runWithTransaction(this.sequelize, null, fn);
  }

  current(): Transaction | undefined {
    return currentTransaction(this.sequelize);
  }

  async savepoint(tx: unknown): Promise<() => Promise<void>> {
    const name = `dapr_outbox_${++savepoints}`;
    const options = { transaction: tx as Transaction, raw: true };
    await this.sequelize.query(`SAVEPOINT ${name}`, options);
    return async () => {
      await this.sequelize.query(`ROLLBACK TO SAVEPOINT ${name}`, options);
    };
  }

  afterCommit(tx: unknown, fn: () => void): void {
    // Sequelize runs a nested transaction's (a savepoint's) after-commit hooks when it is
    // released, before the transaction it belongs to commits: its rows are not kept yet, and
    // not seen by anyone else. The outermost transaction's commit is the one that counts.
    let root = tx as Transaction & { parent?: Transaction | null };
    while (root.parent) root = root.parent as Transaction & { parent?: Transaction | null };
    root.afterCommit(() => fn());
  }
}

/**
 * Runs `fn` in a transaction of its own (begun at its first query, through the SQLite write
 * gate), committing when it resolves and rolling back when it throws.
 */
export async function inTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>, options: { isolationLevel?: Transaction.ISOLATION_LEVELS } = {}): Promise<T> {
  const tx = deferredTransaction(sequelize, options);
  let result: T;
  try {
    result = await fn(tx);
  } catch (err) {
    if (!(tx as unknown as { finished?: string }).finished) await tx.rollback().catch(() => {});
    throw err;
  }
  await commitTransaction(tx);
  return result;
}
