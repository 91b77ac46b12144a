import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { InboxStore } from '../../ports/inbox-store';
import { dialectOf, quoteIdent, writeGateFor, type SqlDialect } from './dialect';

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
    const q = insertIgnore(this.dialect, this.table);
    const [result, meta] = (await this.sequelize.query(q, {
      replacements: [consumer, eventId, now],
      transaction: tx as Transaction,
      raw: true,
    })) as [unknown, unknown];
    return affected(this.dialect, result, meta) === 1;
  }

  async deleteOlderThan(before: number, limit: number): Promise<number> {
    const t = quoteIdent(this.dialect, this.table);
    const rows = (await this.sequelize.query(`SELECT consumer, event_id FROM ${t} WHERE handled_time < ? ORDER BY handled_time LIMIT ${Math.trunc(limit)}`, {
      replacements: [before],
      type: QueryTypes.SELECT,
      transaction: null,
    })) as Array<{ consumer: string; event_id: string }>;
    if (rows.length === 0) return 0;
    const where = rows.map(() => '(consumer = ? AND event_id = ?)').join(' OR ');
    return writeGateFor(this.sequelize).run(async () => {
      const [result, meta] = (await this.sequelize.query(`DELETE FROM ${t} WHERE ${where}`, {
        replacements: rows.flatMap((r) => [r.consumer, r.event_id]),
        transaction: null,
        raw: true,
      })) as [unknown, unknown];
      return affected(this.dialect, result, meta);
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

function affected(dialect: SqlDialect, result: unknown, meta: unknown): number {
  if (dialect === 'sqlite') return Number((meta as { changes?: number } | undefined)?.changes ?? 0);
  if (dialect === 'postgres') return Number((meta as { rowCount?: number } | undefined)?.rowCount ?? 0);
  return Number((result as { affectedRows?: number } | undefined)?.affectedRows ?? 0);
}
