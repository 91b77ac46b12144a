import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { InboxKey, InboxKeyStore, InboxPage, InboxPageQuery, InboxStore, KeyPosition } from '../../ports/inbox-store';
import { dialectOf, quoteIdent, supportsInsertReturning, type SqlDialect } from './dialect';
import { prepareConnection, writeGateFor } from './write-gate';

/** Keys per INSERT of recordAll(): 3 parameters each, well under every dialect's limit. */
const KEYS_PER_INSERT = 500;

/**
 * The inbox table on Sequelize. The insert ignores a duplicate key instead of failing, so the
 * handler's transaction stays usable; on MySQL/MariaDB a concurrent duplicate waits on the first
 * insert's row lock and then sees it committed (duplicate) or rolled back (first after all).
 */
export class SequelizeInboxStore implements InboxStore {
  readonly dialect: SqlDialect;
  /** The ordering keys' positions, in `keysTable`. */
  readonly keys: SequelizeInboxKeyStore;
  private returning: Promise<boolean> | undefined;

  constructor(
    readonly sequelize: Sequelize,
    readonly table: string,
    /** The ordering keys' table. Default: the inbox's name + '_keys', as the migrations name it. */
    readonly keysTable: string = `${table}_keys`,
  ) {
    this.dialect = dialectOf(sequelize);
    this.keys = new SequelizeInboxKeyStore(sequelize, keysTable, table);
  }

  async record(consumer: string, eventId: string, tx: unknown, now: number): Promise<boolean> {
    // As an INSERT query Sequelize resolves [insert id, affected rows] on every dialect; a RAW
    // query on SQLite would report no change count at all.
    const [, affectedRows] = (await this.sequelize.query(insertIgnore(this.dialect, this.table), {
      replacements: [consumer, eventId, now],
      transaction: tx as Transaction,
      type: QueryTypes.INSERT,
    })) as [unknown, number];
    return Number(affectedRows) === 1;
  }

  async size(): Promise<number> {
    const rows = (await this.sequelize.query(`SELECT COUNT(*) AS n FROM ${quoteIdent(this.dialect, this.table)}`, {
      type: QueryTypes.SELECT,
      transaction: null,
    })) as Array<{ n: unknown }>;
    return Number(rows[0]?.n ?? 0);
  }

  async page(query: InboxPageQuery): Promise<InboxPage> {
    const q = inboxPage(this.dialect, this.table, query);
    const rows = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: null })) as Array<{ consumer: unknown; event_id: unknown; handled_time: unknown }>;
    const entries = rows.slice(0, query.limit).map((r) => ({ consumer: String(r.consumer), eventId: String(r.event_id), handledTime: Number(r.handled_time) }));
    const last = entries[entries.length - 1];
    return { entries, next: rows.length > query.limit && last ? { consumer: last.consumer, eventId: last.eventId } : null };
  }

  /**
   * One multi-row INSERT that ignores duplicates and returns the rows it inserted (SQLite 3.35+,
   * PostgreSQL, MariaDB 10.5+). MySQL has no RETURNING: there each key is recorded on its own.
   */
  async recordAll(keys: readonly InboxKey[], tx: unknown, now: number): Promise<boolean[]> {
    if (keys.length === 1 || !(await this.hasReturning())) {
      const flags: boolean[] = [];
      for (const k of keys) flags.push(await this.record(k.consumer, k.eventId, tx, now));
      return flags;
    }
    const inserted = new Set<string>();
    // In one order everywhere: two transactions recording the same ids (a redelivery racing the
    // first delivery) then wait for each other's row locks in turn instead of deadlocking.
    const sorted = [...keys].sort((a, b) => compare(a.consumer, b.consumer) || compare(a.eventId, b.eventId));
    for (let at = 0; at < sorted.length; at += KEYS_PER_INSERT) {
      const chunk = sorted.slice(at, at + KEYS_PER_INSERT);
      const rows = (await this.sequelize.query(insertIgnoreReturning(this.dialect, this.table, chunk.length), {
        replacements: chunk.flatMap((k) => [k.consumer, k.eventId, now]),
        transaction: tx as Transaction,
        type: QueryTypes.SELECT,
      })) as Array<{ consumer: string; event_id: string }>;
      for (const r of rows) inserted.add(keyOf(r.consumer, r.event_id));
    }
    return keys.map((k) => inserted.has(keyOf(k.consumer, k.eventId)));
  }

  async remove(keys: readonly InboxKey[], tx: unknown): Promise<void> {
    // SQLite parses a chain of ORs as a tree at most 1000 deep.
    for (let at = 0; at < keys.length; at += 200) {
      const chunk = keys.slice(at, at + 200);
      await this.sequelize.query(`DELETE FROM ${quoteIdent(this.dialect, this.table)} WHERE ${chunk.map(() => '(consumer = ? AND event_id = ?)').join(' OR ')}`, {
        replacements: chunk.flatMap((k) => [k.consumer, k.eventId]),
        transaction: tx as Transaction,
        type: QueryTypes.BULKDELETE,
      });
    }
  }

  /** Whether INSERT ... RETURNING is there; asked of the server once (MySQL or MariaDB). */
  private hasReturning(): Promise<boolean> {
    if (!this.returning) {
      this.returning = (async () => {
        if (this.dialect === 'sqlite' || this.dialect === 'postgres') return true;
        await prepareConnection(this.sequelize);
        const [row] = (await this.sequelize.query('SELECT VERSION() AS v', { type: QueryTypes.SELECT, transaction: null })) as Array<{ v: string }>;
        return supportsInsertReturning(String(row?.v ?? ''));
      })();
      this.returning.catch(() => (this.returning = undefined));
    }
    return this.returning;
  }

  async deleteOlderThan(before: number, limit: number): Promise<number> {
    const t = quoteIdent(this.dialect, this.table);
    const oldest = selectHandledBefore(this.dialect, this.table, before, limit);
    const rows = (await this.sequelize.query(oldest.sql, {
      replacements: oldest.params,
      type: QueryTypes.SELECT,
      transaction: null,
    })) as Array<{ consumer: string; event_id: string }>;
    if (rows.length === 0) return 0;
    const where = rows.map(() => '(consumer = ? AND event_id = ?)').join(' OR ');
    return writeGateFor(this.sequelize).run(async () => {
      // BULKDELETE resolves with the deleted count on every dialect (a RAW query reports none on SQLite).
      const deleted = await this.sequelize.query(`DELETE FROM ${t} WHERE ${where}`, {
        replacements: rows.flatMap((r) => [r.consumer, r.event_id]),
        transaction: null,
        type: QueryTypes.BULKDELETE,
      });
      return Number(deleted);
    });
  }
}

export function insertIgnore(dialect: SqlDialect, table: string): string {
  const t = quoteIdent(dialect, table);
  switch (dialect) {
    case 'sqlite':
      return `INSERT OR IGNORE INTO ${t} (consumer, event_id, handled_time) VALUES (?, ?, ?)`;
    case 'postgres':
      return `INSERT INTO ${t} (consumer, event_id, handled_time) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`;
    default:
      return `INSERT IGNORE INTO ${t} (consumer, event_id, handled_time) VALUES (?, ?, ?)`;
  }
}

/**
 * One page of entries after the cursor, in primary-key order (consumer, event id), one row more
 * than asked to tell whether another page follows. Reads the primary key only.
 */
export function inboxPage(dialect: SqlDialect, table: string, query: InboxPageQuery): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (query.consumer !== undefined) {
    where.push('consumer = ?');
    params.push(query.consumer);
    if (query.after) {
      where.push('event_id > ?');
      params.push(query.after.eventId);
    }
  } else if (query.after) {
    where.push('(consumer > ? OR (consumer = ? AND event_id > ?))');
    params.push(query.after.consumer, query.after.consumer, query.after.eventId);
  }
  return {
    sql:
      `SELECT consumer, event_id, handled_time FROM ${quoteIdent(dialect, table)}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ` +
      `ORDER BY consumer, event_id LIMIT ${Math.trunc(query.limit) + 1}`,
    params,
  };
}

/**
 * A multi-row insert of `rows` keys that skips the keys already there and returns the inserted
 * ones. A key twice in one statement is inserted once (and returned once) on all three.
 */
export function insertIgnoreReturning(dialect: SqlDialect, table: string, rows: number): string {
  const t = quoteIdent(dialect, table);
  const values = Array.from({ length: rows }, () => '(?, ?, ?)').join(', ');
  switch (dialect) {
    case 'sqlite':
      return `INSERT OR IGNORE INTO ${t} (consumer, event_id, handled_time) VALUES ${values} RETURNING consumer, event_id`;
    case 'postgres':
      return `INSERT INTO ${t} (consumer, event_id, handled_time) VALUES ${values} ON CONFLICT DO NOTHING RETURNING consumer, event_id`;
    default:
      return `INSERT IGNORE INTO ${t} (consumer, event_id, handled_time) VALUES ${values} RETURNING consumer, event_id`;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function keyOf(consumer: string, eventId: string): string {
  return `${consumer}\u0000${eventId}`;
}

/** The oldest entries handled before `before`, by the handled_time index, in a bounded batch. */
export function selectHandledBefore(dialect: SqlDialect, table: string, before: number, limit: number): { sql: string; params: unknown[] } {
  return {
    sql: `SELECT consumer, event_id FROM ${quoteIdent(dialect, table)} WHERE handled_time < ? ORDER BY handled_time LIMIT ${Math.trunc(limit)}`,
    params: [before],
  };
}

/**
 * The receive side's ordering keys on Sequelize. lock() is one statement that creates the row or
 * takes it with an exclusive lock, never a read lock first: two transactions that read-locked the
 * same row and then both asked to write it would deadlock (MySQL's INSERT IGNORE on an existing
 * key takes a shared lock, for one). SQLite needs no row lock: its writers take turns anyway.
 */
export class SequelizeInboxKeyStore implements InboxKeyStore {
  readonly dialect: SqlDialect;

  constructor(
    readonly sequelize: Sequelize,
    readonly table: string,
    readonly inboxTable: string,
  ) {
    this.dialect = dialectOf(sequelize);
  }

  async lock(consumer: string, key: string, tx: unknown, now: number): Promise<KeyPosition> {
    const t = quoteIdent(this.dialect, this.table);
    const columns = '(consumer, ordering_key, last_sequence, waiting_since, modification_time) VALUES (?, ?, 0, NULL, ?)';
    let rows: Array<{ last_sequence: unknown; waiting_since: unknown }> = [];
    const read = async (lock: string) =>
      (rows = (await this.sequelize.query(`SELECT last_sequence, waiting_since FROM ${t} WHERE consumer = ? AND ordering_key = ?${lock}`, {
        replacements: [consumer, key],
        transaction: tx as Transaction,
        type: QueryTypes.SELECT,
      })) as typeof rows);
    if (this.dialect === 'postgres') {
      // PostgreSQL locks the row it updates on conflict (after waiting for a concurrent insert or
      // lock to end) and returns its latest version.
      rows = (await this.sequelize.query(`INSERT INTO ${t} AS k ${columns} ON CONFLICT (consumer, ordering_key) DO UPDATE SET last_sequence = k.last_sequence RETURNING last_sequence, waiting_since`, {
        replacements: [consumer, key, now],
        transaction: tx as Transaction,
        type: QueryTypes.SELECT,
      })) as typeof rows;
    } else if (this.dialect === 'sqlite') {
      await this.sequelize.query(`INSERT OR IGNORE INTO ${t} ${columns}`, { replacements: [consumer, key, now], transaction: tx as Transaction, type: QueryTypes.INSERT });
      await read('');
    } else {
      // The no-op update takes the row's exclusive lock (also when it existed); the locking read
      // then sees its latest committed version whatever the transaction's snapshot.
      await this.sequelize.query(`INSERT INTO ${t} ${columns} ON DUPLICATE KEY UPDATE last_sequence = last_sequence`, {
        replacements: [consumer, key, now],
        transaction: tx as Transaction,
        type: QueryTypes.INSERT,
      });
      await read(' FOR UPDATE');
    }
    const row = rows[0];
    if (!row) throw new Error(`the ordering key row (${consumer}, ${key}) could not be read`);
    return { lastSequence: Number(row.last_sequence), waitingSince: row.waiting_since === null || row.waiting_since === undefined ? null : Number(row.waiting_since) };
  }

  async set(consumer: string, key: string, position: KeyPosition, tx: unknown, now: number): Promise<void> {
    await this.sequelize.query(`UPDATE ${quoteIdent(this.dialect, this.table)} SET last_sequence = ?, waiting_since = ?, modification_time = ? WHERE consumer = ? AND ordering_key = ?`, {
      replacements: [position.lastSequence, position.waitingSince, now, consumer, key],
      transaction: tx as Transaction,
      type: QueryTypes.UPDATE,
    });
  }

  async handled(consumer: string, eventId: string, tx: unknown): Promise<boolean> {
    const rows = await this.sequelize.query(`SELECT 1 AS found FROM ${quoteIdent(this.dialect, this.inboxTable)} WHERE consumer = ? AND event_id = ?`, {
      replacements: [consumer, eventId],
      transaction: tx as Transaction,
      type: QueryTypes.SELECT,
    });
    return rows.length > 0;
  }
}
