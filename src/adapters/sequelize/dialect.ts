import type { Sequelize, Transaction } from 'sequelize';
import { commitTransaction } from './commit';

/** The SQL dialects the Sequelize stores speak. */
export type SqlDialect = 'mysql' | 'mariadb' | 'sqlite' | 'postgres';

export function dialectOf(sequelize: Sequelize): SqlDialect {
  const d = sequelize.getDialect();
  if (d === 'mysql' || d === 'mariadb' || d === 'sqlite' || d === 'postgres') return d;
  throw new Error(`dapr-outbox: unsupported Sequelize dialect '${d}' (use mysql, mariadb, sqlite or postgres)`);
}

/** Quotes an identifier for the dialect. Table names come from options, never from users' input. */
export function quoteIdent(dialect: SqlDialect, name: string): string {
  return dialect === 'mysql' || dialect === 'mariadb' ? `\`${name.replace(/`/g, '``')}\`` : `"${name.replace(/"/g, '""')}"`;
}

/**
 * Whether `SELECT ... FOR UPDATE SKIP LOCKED` is available: MySQL 8.0.1+, MariaDB 10.6+,
 * PostgreSQL 9.5+. Elsewhere claims fall back to a conditional UPDATE.
 */
export function supportsSkipLocked(dialect: SqlDialect, version: string): boolean {
  if (dialect === 'postgres') return true;
  if (dialect === 'sqlite') return false;
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (/mariadb/i.test(version) || dialect === 'mariadb') return major > 10 || (major === 10 && minor >= 6);
  return major > 8 || (major === 8 && (minor > 0 || patch >= 1));
}

/**
 * SQLite has one writer at a time and Sequelize gives each transaction its own connection, so two
 * of our transactions at once end in SQLITE_BUSY. Every write transaction this library opens on
 * SQLite therefore runs through one queue per Sequelize instance. Other dialects pass straight
 * through.
 */
export class WriteGate {
  private tail: Promise<void> = Promise.resolve();
  constructor(readonly serial: boolean) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.serial) return fn();
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Takes the gate; the returned function gives it back (exactly once). */
  async acquire(): Promise<() => void> {
    if (!this.serial) return () => {};
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const previous = this.tail;
    this.tail = previous.then(() => held);
    await previous;
    let done = false;
    return () => {
      if (!done) {
        done = true;
        release();
      }
    };
  }
}

const gates = new WeakMap<Sequelize, WriteGate>();

/** The write gate shared by everything that writes through this Sequelize instance. */
export function writeGateFor(sequelize: Sequelize): WriteGate {
  let gate = gates.get(sequelize);
  if (!gate) {
    gate = new WriteGate(sequelize.getDialect() === 'sqlite');
    gates.set(sequelize, gate);
  }
  return gate;
}

const prepared = new WeakMap<Sequelize, Promise<void>>();

/**
 * One-time connection settings: on SQLite a busy timeout (so a writer outside our gate waits
 * instead of failing at once) and WAL journaling for file databases.
 */
export function prepareConnection(sequelize: Sequelize): Promise<void> {
  let p = prepared.get(sequelize);
  if (!p) {
    p = (async () => {
      if (sequelize.getDialect() !== 'sqlite') return;
      await sequelize.query('PRAGMA busy_timeout = 10000', { raw: true, transaction: null });
      const storage = (sequelize as unknown as { options: { storage?: string } }).options.storage;
      if (storage && storage !== ':memory:' && !storage.startsWith('file::memory:')) {
        await sequelize.query('PRAGMA journal_mode = WAL', { raw: true, transaction: null });
      }
    })();
    prepared.set(sequelize, p);
    p.catch(() => prepared.delete(sequelize));
  }
  return p;
}

/**
 * Opens a transaction through the gate. On SQLite the transaction takes the write lock at BEGIN
 * (IMMEDIATE), so it never fails half-way on a lock upgrade.
 */
export async function beginTransaction(sequelize: Sequelize): Promise<{ tx: Transaction; done: () => void }> {
  await prepareConnection(sequelize);
  const release = await writeGateFor(sequelize).acquire();
  try {
    const sqlite = sequelize.getDialect() === 'sqlite';
    const tx = await sequelize.transaction(sqlite ? ({ type: 'IMMEDIATE' } as never) : {});
    if (sqlite) await sequelize.query('PRAGMA busy_timeout = 10000', { raw: true, transaction: tx });
    return { tx, done: release };
  } catch (err) {
    release();
    throw err;
  }
}

/** Runs `fn` in a transaction of its own (through the gate), committing or rolling back. */
export async function inTransaction<T>(sequelize: Sequelize, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  const { tx, done } = await beginTransaction(sequelize);
  try {
    const result = await fn(tx);
    await commitTransaction(tx);
    return result;
  } catch (err) {
    if (!(tx as unknown as { finished?: string }).finished) await tx.rollback().catch(() => {});
    throw err;
  } finally {
    done();
  }
}
