import type { Sequelize, Transaction } from 'sequelize';
import type { TransactionPort } from '../../ports/transactions';
import { commitTransaction } from './commit';
import { beginTransaction } from './dialect';
import { currentTransaction, installTransactionContext, runWithTransaction } from './transaction-context';

/** The transaction port on Sequelize, with the ambient transaction on AsyncLocalStorage. */
export class SequelizeTransactions implements TransactionPort {
  /** Releases of the SQLite write gate, per open transaction. */
  private readonly gates = new WeakMap<Transaction, () => void>();

  constructor(readonly sequelize: Sequelize) {
    installTransactionContext(sequelize);
  }

  async begin(): Promise<Transaction> {
    const { tx, done } = await beginTransaction(this.sequelize);
    this.gates.set(tx, done);
    return tx;
  }

  async commit(tx: unknown): Promise<void> {
    const t = tx as Transaction;
    try {
      await commitTransaction(t);
    } finally {
      this.releaseGate(t);
    }
  }

  async rollback(tx: unknown): Promise<void> {
    const t = tx as Transaction;
    try {
      if (!(t as unknown as { finished?: string }).finished) await t.rollback();
    } finally {
      this.releaseGate(t);
    }
  }

  bind<T>(tx: unknown, fn: () => T): T {
    return runWithTransaction(this.sequelize, tx as Transaction, fn);
  }

  current(): Transaction | undefined {
    return currentTransaction(this.sequelize);
  }

  afterCommit(tx: unknown, fn: () => void): void {
    (tx as Transaction).afterCommit(() => fn());
  }

  private releaseGate(t: Transaction): void {
    const done = this.gates.get(t);
    if (done) {
      this.gates.delete(t);
      done();
    }
  }
}
