import type { Sequelize, Transaction } from 'sequelize';
import { prepareConnection, writeGateFor } from './write-gate';

/**
 * A Sequelize transaction that begins at its first query instead of when it is created.
 *
 * A request's unit of work exists from the moment the request arrives, but it should cost
 * nothing until the handler touches the database: no pooled connection held while a slow client
 * uploads its body, and on SQLite no write lock (the write gate, BEGIN IMMEDIATE) that would
 * stall every other writer meanwhile. Sequelize awaits `transaction.connection` before every
 * query it runs in a transaction; until the transaction has begun, that property is a promise
 * that begins it (gate, connection, BEGIN), so the first query opens it and the others join.
 */
export interface DeferredTransaction extends Transaction {
  /** Whether BEGIN has been sent (the transaction holds a connection). */
  readonly begun: boolean;
}

type Base = new (sequelize: Sequelize, options: object) => Transaction;

interface Internals {
  id: string;
  finished?: string;
  _afterCommitHooks: Array<(t: Transaction) => unknown>;
  begin(): Promise<unknown>;
  setDeferrable(): Promise<unknown>;
  cleanup(): void;
}

type Connection = { uuid?: string };

const classes = new WeakMap<object, new (sequelize: Sequelize, options: object) => DeferredTransaction>();

/** A new deferred transaction on `sequelize` (no I/O until its first query). */
export function deferredTransaction(sequelize: Sequelize, options: { isolationLevel?: Transaction.ISOLATION_LEVELS } = {}): DeferredTransaction {
  const ctor = sequelize.constructor as unknown as { Transaction: Base };
  let Deferred = classes.get(ctor);
  if (!Deferred) {
    Deferred = defineDeferred(ctor.Transaction);
    classes.set(ctor, Deferred);
  }
  const sqlite = sequelize.getDialect() === 'sqlite';
  // SQLite: take the write lock at BEGIN, so the transaction never fails half-way on a lock upgrade.
  return new Deferred(sequelize, sqlite ? { type: 'IMMEDIATE' } : options);
}

/** Whether `tx` is a deferred transaction that never began (commit and rollback cost nothing). */
export function neverBegan(tx: unknown): boolean {
  return typeof tx === 'object' && tx !== null && (tx as Partial<DeferredTransaction>).begun === false;
}

function defineDeferred(Transaction: Base): new (sequelize: Sequelize, options: object) => DeferredTransaction {
  class Deferred extends Transaction {
    private conn: Connection | undefined;
    private opening: Promise<Connection> | undefined;
    /** True while BEGIN runs: its own queries get the connection itself. */
    private starting = false;
    private started = false;
    private releaseGate: (() => void) | undefined;

    get begun(): boolean {
      return this.started;
    }

    // Sequelize awaits this before each query of the transaction.
    get connection(): Connection | Promise<Connection> {
      if (this.conn && (this.started || this.starting)) return this.conn;
      if (!this.opening) this.opening = this.start();
      return this.opening;
    }

    set connection(c: Connection | Promise<Connection>) {
      this.conn = c as Connection;
    }

    private async start(): Promise<Connection> {
      const self = this as unknown as Internals & Transaction;
      if (self.finished) throw new Error(`the transaction has already finished (${self.finished})`);
      const sequelize = (this as unknown as { sequelize: Sequelize }).sequelize;
      await prepareConnection(sequelize);
      const gate = writeGateFor(sequelize);
      this.releaseGate = await gate.acquire(this);
      try {
        const manager = (sequelize as unknown as { connectionManager: { getConnection(o: object): Promise<Connection> } }).connectionManager;
        const conn = await manager.getConnection({ uuid: self.id });
        conn.uuid = self.id;
        this.conn = conn;
        this.starting = true;
        if (sequelize.getDialect() === 'sqlite') {
          // Per connection, and before BEGIN IMMEDIATE: a writer outside the gate makes it wait, not fail.
          await sequelize.query('PRAGMA busy_timeout = 10000', { raw: true, transaction: this });
        }
        await self.begin();
        await self.setDeferrable();
        this.started = true;
        return conn;
      } catch (err) {
        if (this.conn) {
          await (sequelize as unknown as { connectionManager: { releaseConnection(c: Connection): Promise<void> } }).connectionManager
            .releaseConnection(this.conn)
            .catch(() => {});
          this.conn.uuid = undefined;
        }
        this.conn = undefined;
        this.opening = undefined;
        this.giveGateBack();
        throw err;
      } finally {
        this.starting = false;
      }
    }

    /** Waits for a BEGIN in flight, so that commit and rollback see how it ended. */
    private async settled(): Promise<void> {
      if (this.opening && !this.started) await this.opening.catch(() => {});
    }

    async commit(): Promise<void> {
      await this.settled();
      const self = this as unknown as Internals;
      if (!this.started) {
        if (self.finished) throw new Error(`Transaction cannot be committed because it has been finished with state: ${self.finished}`);
        self.finished = 'commit';
        for (const hook of self._afterCommitHooks) await hook.call(this, this);
        return;
      }
      try {
        await super.commit();
      } catch (err) {
        await this.abandon();
        throw err;
      } finally {
        this.giveGateBack();
      }
    }

    /**
     * After a failed COMMIT, SQLite keeps the transaction open (a deferred foreign key, say), and
     * Sequelize neither rolls it back nor closes the connection: its write lock would stay taken
     * until the process ends. Roll it back and close the connection here.
     */
    private async abandon(): Promise<void> {
      const sequelize = (this as unknown as { sequelize: Sequelize }).sequelize;
      const conn = this.conn as (Connection & { run?(sql: string, cb: () => void): void; close?(cb: () => void): void; open?: boolean }) | undefined;
      if (sequelize.getDialect() !== 'sqlite' || !conn?.run || !conn.close) return;
      await new Promise<void>((resolve) => conn.run!('ROLLBACK', () => resolve()));
      if (conn.open !== false) await new Promise<void>((resolve) => conn.close!(() => resolve()));
      const manager = (sequelize as unknown as { connectionManager: { connections?: Record<string, unknown> } }).connectionManager;
      const id = (this as unknown as Internals).id;
      if (manager.connections?.[id] === conn) delete manager.connections[id];
    }

    async rollback(): Promise<void> {
      await this.settled();
      const self = this as unknown as Internals;
      if (!this.started) {
        if (!self.finished) self.finished = 'rollback';
        return;
      }
      try {
        await super.rollback();
      } finally {
        this.giveGateBack();
      }
    }

    cleanup(): void {
      if (this.conn) (Transaction.prototype as unknown as Internals).cleanup.call(this);
    }

    private giveGateBack(): void {
      const release = this.releaseGate;
      this.releaseGate = undefined;
      release?.();
    }
  }
  return Deferred as unknown as new (sequelize: Sequelize, options: object) => DeferredTransaction;
}
