/**
 * The queries of ordering keys on the publish side, as pure builders (see outbox-sql.ts for how
 * values are passed). A key's scope is (pubsub, topic, key): the order holds among the events of
 * one key on one topic, as with Kafka partition keys and Pub/Sub ordering keys.
 *
 * The keys table holds, per scope, `last_sequence` (the last number given out) and
 * `next_sequence` (the next to publish). Writers take the scope's row lock to number their rows,
 * and whoever publishes a row takes the same lock to move the scope on; so a writer always sees
 * whether its first row is the next to publish, and a row waiting for its turn is always found
 * by the publish that frees it.
 */
import { EventState } from '../../ports/outbox-store';
import { quoteIdent, type SqlDialect } from './dialect';
import { OUTBOX_COLUMNS, type Query } from './outbox-sql';

/** The events of one ordering key on one pubsub and topic. */
export interface KeyScope {
  readonly pubsubName: string;
  readonly topic: string;
  readonly orderingKey: string;
}

/** One scope's numbers: the last sequence given out and the next one to publish. */
export interface KeyPosition extends KeyScope {
  lastSequence: number;
  nextSequence: number;
}

/** A stable text for a scope, to group and sort by. */
export function scopeId(s: KeyScope): string {
  return `${s.pubsubName}\u0000${s.topic}\u0000${s.orderingKey}`;
}

/**
 * Scopes in one fixed order: writers and publishers that lock several scopes lock them in this
 * order, so they wait for each other instead of deadlocking.
 */
export function sortScopes<T extends KeyScope>(scopes: readonly T[]): T[] {
  return [...scopes].sort(compareScopes);
}

export function compareScopes(a: KeyScope, b: KeyScope): number {
  const x = scopeId(a);
  const y = scopeId(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Reserves `count` sequence numbers per scope, creating the scope's row at its first event, and
 * locks the rows to the end of the transaction; with a count of 0 it only locks them (what a
 * publish does before it moves a scope on). Writers and publishers alike lock their scopes this
 * way, in sortScopes order. PostgreSQL, SQLite and MariaDB 10.5+ (`returning`) answer with the
 * numbers; MySQL reads them back with selectPositions.
 */
export function reserveSequences(dialect: SqlDialect, table: string, scopes: ReadonlyArray<KeyScope & { count: number }>, now: number, returning = true): Query {
  const t = quoteIdent(dialect, table);
  const params: unknown[] = [];
  for (const s of scopes) params.push(s.pubsubName, s.topic, s.orderingKey, s.count, now);
  const values = scopes.map(() => '(?, ?, ?, ?, 1, ?)').join(', ');
  // OR ABORT is SQLite's default made explicit: Sequelize runs a statement that starts with
  // "INSERT INTO" without reading its rows, and the RETURNING rows are the answer here.
  const insert = `INSERT ${dialect === 'sqlite' ? 'OR ABORT ' : ''}INTO ${t} (pubsub_name, topic, ordering_key, last_sequence, next_sequence, modification_time) VALUES ${values}`;
  if (dialect === 'mysql' || dialect === 'mariadb') {
    // MariaDB's RETURNING gives the rows as the UPDATE left them.
    const answer = returning ? ' RETURNING pubsub_name, topic, ordering_key, last_sequence, next_sequence' : '';
    return { sql: `${insert} ON DUPLICATE KEY UPDATE last_sequence = last_sequence + VALUES(last_sequence), modification_time = VALUES(modification_time)${answer}`, params };
  }
  return {
    sql:
      `${insert} ON CONFLICT (pubsub_name, topic, ordering_key) DO UPDATE SET last_sequence = ${t}.last_sequence + excluded.last_sequence, ` +
      `modification_time = excluded.modification_time RETURNING pubsub_name, topic, ordering_key, last_sequence, next_sequence`,
    params,
  };
}

/** The scopes' rows (MySQL, after reserveSequences locked them). */
export function selectPositions(dialect: SqlDialect, table: string, scopes: readonly KeyScope[]): Query {
  const params: unknown[] = [];
  for (const s of scopes) params.push(s.pubsubName, s.topic, s.orderingKey);
  return {
    sql:
      `SELECT pubsub_name, topic, ordering_key, last_sequence, next_sequence FROM ${quoteIdent(dialect, table)} ` +
      `WHERE ${scopes.map(() => '(pubsub_name = ? AND topic = ? AND ordering_key = ?)').join(' OR ')}`,
    params,
  };
}

/**
 * Moves scopes on by one, each past the sequence given with it (where it stands; the caller read
 * the positions under the lock). One statement for any number of scopes, each named by its
 * primary key.
 */
export function moveScopes(dialect: SqlDialect, table: string, rows: ReadonlyArray<KeyScope & { sequence: number }>, now: number): Query {
  const params: unknown[] = [now];
  for (const r of rows) params.push(r.pubsubName, r.topic, r.orderingKey, r.sequence);
  return {
    sql:
      `UPDATE ${quoteIdent(dialect, table)} SET next_sequence = next_sequence + 1, modification_time = ? ` +
      `WHERE ${rows.map(() => '(pubsub_name = ? AND topic = ? AND ordering_key = ? AND next_sequence = ?)').join(' OR ')}`,
    params,
  };
}

/** The rows at `sequence + 1` of each scope given: by the (ordering_key, key_sequence) index. */
function nextRows(rows: ReadonlyArray<KeyScope & { sequence: number }>): { where: string; params: unknown[] } {
  const params: unknown[] = [];
  for (const r of rows) params.push(r.orderingKey, r.sequence + 1, r.topic, r.pubsubName);
  return { where: `(${rows.map(() => '(ordering_key = ? AND key_sequence = ? AND topic = ? AND pubsub_name = ?)').join(' OR ')})`, params };
}

/**
 * Hands the next row of each scope its turn, if it is written and waiting: leased to `owner` (who
 * publishes it next, with the attempt counted as the committer's is), or due at once for the
 * relay when `owner` is null.
 */
export function startTurns(dialect: SqlDialect, table: string, rows: ReadonlyArray<KeyScope & { sequence: number }>, owner: string | null, leaseUntil: number, now: number): Query {
  // Due "at once" is the time the row was written, on the same timeline as every due time (and
  // read before this UPDATE sets a new one: MySQL assigns left to right).
  const lease = owner === null ? 'next_attempt_time = modification_time' : 'lock_owner = ?, locked_until = ?, next_attempt_time = ?, times_sent = times_sent + 1';
  const leaseParams = owner === null ? [] : [owner, leaseUntil, leaseUntil];
  const next = nextRows(rows);
  return {
    sql:
      `UPDATE ${quoteIdent(dialect, table)} SET ${lease}, row_version = row_version + 1, modification_time = ? ` +
      `WHERE ${next.where} AND state = ${EventState.NotPublished} AND next_attempt_time IS NULL`,
    params: [...leaseParams, now, ...next.params],
  };
}

/** The rows startTurns just leased to `owner` until `leaseUntil`. */
export function selectStarted(dialect: SqlDialect, table: string, rows: ReadonlyArray<KeyScope & { sequence: number }>, owner: string, leaseUntil: number): Query {
  const next = nextRows(rows);
  return {
    sql: `SELECT ${OUTBOX_COLUMNS} FROM ${quoteIdent(dialect, table)} WHERE ${next.where} AND lock_owner = ? AND locked_until = ? AND state = ${EventState.NotPublished}`,
    params: [...next.params, owner, leaseUntil],
  };
}
