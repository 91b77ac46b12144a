import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { InboxPage, InboxPageQuery, InboxStore } from '../../ports/inbox-store';
import { dialectOf, quoteIdent, type SqlDialect } from './dialect';
import { writeGateFor } from './write-gate';

/**
 * The inbox table on Sequelize. The insert ignores a duplicate key instead of failing, so the
 * handler's transaction stays usable; on MySQL/MariaDB a concurrent duplicate waits on the first
 * insert's row lock and then sees it committed (duplicate) or rolled back (first after all).
 */
export class SequelizeInboxStore implements InboxStore {
  readonly dialect: SqlDialect;

  constructor(
    readonly sequelize: Sequelize,
    readonly table: string,
  ) {
    this.dialect = dialectOf(sequelize);
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

/** The oldest entries handled before `before`, by the handled_time index, in a bounded batch. */
export function selectHandledBefore(dialect: SqlDialect, table: string, before: number, limit: number): { sql: string; params: unknown[] } {
  return {
    sql: `SELECT consumer, event_id FROM ${quoteIdent(dialect, table)} WHERE handled_time < ? ORDER BY handled_time LIMIT ${Math.trunc(limit)}`,
    params: [before],
  };
}
