/**
 * Outbox rows made fast, straight into the table the migrations create: what a backlog looks
 * like after the broker was down for a while (figure 3), or a long-lived table (figure 4).
 */
import { randomUUID } from 'node:crypto';
import type { Sequelize } from 'sequelize';
import { EventState } from '../../src/extend';

const COLUMNS = 'event_id, event_type_name, topic, pubsub_name, content, state, times_sent, creation_time, modification_time, next_attempt_time';

/** The body of one event, as the bus would have stored it (about 170 bytes). */
export function eventContent(id: string, topic: string, created: number): string {
  return JSON.stringify({ account: `u-${id.slice(0, 8)}`, mobile: '13800000000', id, creationTime: new Date(created).toISOString(), topic });
}

/**
 * The multi-row INSERTs (1,000 rows each, values inlined) that write `count` NotPublished rows,
 * due since a minute ago. Built once and run again after each TRUNCATE: formatting 100,000 rows
 * costs the client seconds, which would otherwise be paid again every round.
 */
export function pendingRowsSql(sequelize: Sequelize, table: string, count: number, topic = 'RegisterUserEvent'): string[] {
  const due = Date.now() - 60_000;
  const statements: string[] = [];
  const q = (v: string) => sequelize.escape(v);
  for (let done = 0; done < count; done += 1000) {
    const values: string[] = [];
    for (let i = 0; i < Math.min(1000, count - done); i++) {
      const id = randomUUID();
      values.push(`(${q(id)}, ${q(topic)}, ${q(topic)}, 'pubsub', ${q(eventContent(id, topic, due))}, ${EventState.NotPublished}, 0, ${due}, ${due}, ${due})`);
    }
    statements.push(`INSERT INTO ${table} (${COLUMNS}) VALUES ${values.join(', ')}`);
  }
  return statements;
}

/** Published rows: `published` events; everything else not yet published: `pending`. */
export async function countPublished(sequelize: Sequelize, table: string): Promise<{ published: number; pending: number }> {
  const [rows] = (await sequelize.query(`SELECT SUM(CASE WHEN state = ${EventState.Published} THEN 1 ELSE 0 END) AS p, COUNT(*) AS n FROM ${table}`, { raw: true })) as [Array<{ p: unknown; n: unknown }>, unknown];
  const p = Number(rows[0]?.p ?? 0);
  return { published: p, pending: Number(rows[0]?.n ?? 0) - p };
}

/** Adds the time each call of `obj[method]` takes to `acc[name]`; returns a function that undoes it. */
export function timeCalls<T extends object>(obj: T, method: keyof T & string, acc: Record<string, number>, name: string = method): () => void {
  const original = obj[method] as unknown as ((...args: unknown[]) => Promise<unknown>) | undefined;
  if (typeof original !== 'function') return () => {}; // an optional method the object lacks
  acc[name] ??= 0;
  (obj as Record<string, unknown>)[method] = async function timed(this: unknown, ...args: unknown[]) {
    const t0 = performance.now();
    try {
      return await original.apply(this, args);
    } finally {
      acc[name]! += performance.now() - t0;
    }
  };
  return () => {
    (obj as Record<string, unknown>)[method] = original;
  };
}
