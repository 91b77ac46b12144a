/**
 * A long-lived outbox table made by the server itself: `count` rows, mostly Published, generated
 * in SQL (MariaDB's sequence tables, PostgreSQL's generate_series, a recursive CTE on SQLite), so
 * a million rows take seconds and no million parameters. Shared by the query-plan tests and the
 * scan-scaling benchmark (figure 4), so both look at the same table.
 *
 * Row k: every 100th is due (NotPublished, next attempt a minute ago), the next one failed with
 * an attempt an hour ahead, the rest Published with modification times scattered over the last
 * two days (k * 7919 mod 172,800 s: a prime stride, so every size gets the same spread).
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { EventState } from '../../src/extend';
import type { DbKind } from './db';

const DAY = 86_400_000;

export const HISTORY_MIX = '98% Published (half older than 1 day), 1% due, 1% failed with a later attempt';

export async function fillHistory(s: Sequelize, kind: DbKind, table: string, count: number, now: number): Promise<void> {
  const cols = 'event_id, event_type_name, topic, pubsub_name, content, state, times_sent, creation_time, modification_time, next_attempt_time';
  const concat = (...parts: string[]) => (kind === 'mysql' ? `CONCAT(${parts.join(', ')})` : parts.join(' || '));
  const select = (k: string) =>
    `SELECT ${concat(`'evt-'`, k)}, 'RegisterUserEvent', 'RegisterUserEvent', 'pubsub', ` +
    `${concat(`'{"account":"u'`, k, `'","mobile":"13800000000","id":"evt-'`, k, `'","topic":"RegisterUserEvent"}'`)}, ` +
    `CASE WHEN ${k} % 100 = 0 THEN ${EventState.NotPublished} WHEN ${k} % 100 = 1 THEN ${EventState.PublishedFailed} ELSE ${EventState.Published} END, 1, ` +
    `${now - 2 * DAY} + ${k}, ${now - 2 * DAY} + (${k} * 7919 % 172800) * 1000, ` +
    `CASE WHEN ${k} % 100 = 0 THEN ${now - 60_000} + ${k} % 1000 WHEN ${k} % 100 = 1 THEN ${now + 3_600_000} + ${k} ELSE NULL END`;
  if (kind === 'mysql') {
    // Chunks of 100,000 keep each statement's undo log small.
    for (let from = 1; from <= count; from += 100_000) {
      const to = Math.min(count, from + 99_999);
      await s.query(`INSERT INTO ${table} (${cols}) ${select('seq')} FROM seq_${from}_to_${to}`, { raw: true });
    }
    await s.query(`ANALYZE TABLE ${table}`, { raw: true });
  } else if (kind === 'postgres') {
    // BIGINT k: k * 7919 overflows a 32-bit integer past 271,000 rows.
    await s.query(`INSERT INTO ${table} (${cols}) ${select('k')} FROM generate_series(CAST(1 AS BIGINT), ${Math.trunc(count)}) AS g(k)`, { raw: true });
    await s.query(`ANALYZE ${table}`, { raw: true });
  } else {
    await s.query(`INSERT INTO ${table} (${cols}) WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ${Math.trunc(count)}) ${select('k')} FROM n`, { raw: true });
    await s.query(`ANALYZE ${table}`, { raw: true });
  }
}

/** A node of PostgreSQL's EXPLAIN (FORMAT JSON) plan. */
export interface PgPlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Plan Rows'?: number;
  Plans?: PgPlanNode[];
}

/** PostgreSQL's plan for a statement (not run), and its nodes flattened. */
export async function explainPostgres(s: Sequelize, q: { sql: string; params: unknown[] }): Promise<{ plan: PgPlanNode; nodes: PgPlanNode[] }> {
  const [row] = (await s.query(`EXPLAIN (FORMAT JSON) ${q.sql}`, { replacements: q.params, type: QueryTypes.SELECT })) as Array<{ 'QUERY PLAN': Array<{ Plan: PgPlanNode }> }>;
  const plan = row!['QUERY PLAN'][0]!.Plan;
  const flat = (n: PgPlanNode): PgPlanNode[] => [n, ...(n.Plans ?? []).flatMap(flat)];
  return { plan, nodes: flat(plan) };
}
