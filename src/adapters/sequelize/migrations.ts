import { createHash } from 'node:crypto';
import type { Sequelize, Transaction } from 'sequelize';
import { OutboxError } from '../../errors';
import { commitTransaction } from './commit';
import { dialectOf, quoteIdent, type SqlDialect } from './dialect';
import { eventIdIndex } from './outbox-sql';

/** Table names the migrations and stores use. */
export interface TableNames {
  /** The outbox (MASA's IntegrationEventLog). Default 'integration_event_log'. */
  outbox: string;
  /** The inbox of handled (consumer, event id) pairs. Default 'integration_event_inbox'. */
  inbox: string;
  /** Which migrations ran. Default 'dapr_outbox_migrations'. */
  migrations: string;
  /**
   * The publish side's position in each ordering key: the last sequence number given out and the
   * next one to publish. Default: the outbox's name + '_keys'.
   */
  outboxKeys: string;
  /** The receive side's position in each ordering key, per consumer. Default: the inbox's name + '_keys'. */
  inboxKeys: string;
}

export const DEFAULT_TABLE_NAMES: TableNames = {
  outbox: 'integration_event_log',
  inbox: 'integration_event_inbox',
  migrations: 'dapr_outbox_migrations',
  outboxKeys: 'integration_event_log_keys',
  inboxKeys: 'integration_event_inbox_keys',
};

/**
 * The table names with the defaults filled in. The key tables follow their table's name, so
 * that two outboxes on one database (their own `outbox` names) never share a key's position.
 */
export function resolveTableNames(names: Partial<TableNames> = {}): TableNames {
  const outbox = names.outbox ?? DEFAULT_TABLE_NAMES.outbox;
  const inbox = names.inbox ?? DEFAULT_TABLE_NAMES.inbox;
  return {
    outbox,
    inbox,
    migrations: names.migrations ?? DEFAULT_TABLE_NAMES.migrations,
    outboxKeys: names.outboxKeys ?? `${outbox}_keys`,
    inboxKeys: names.inboxKeys ?? `${inbox}_keys`,
  };
}

/**
 * One versioned schema step. `up` returns the statements for a dialect; they run in order and
 * the step is recorded in the migrations table. Steps are append-only: a released step never
 * changes.
 */
export interface Migration {
  readonly name: string;
  up(dialect: SqlDialect, tables: TableNames): string[];
}

function columnTypes(dialect: SqlDialect) {
  switch (dialect) {
    case 'sqlite':
      return { pk: 'INTEGER PRIMARY KEY AUTOINCREMENT', big: 'INTEGER', text: 'TEXT', content: 'TEXT', small: 'INTEGER', key: 'VARCHAR(191)' };
    case 'postgres':
      return { pk: 'BIGSERIAL PRIMARY KEY', big: 'BIGINT', text: 'TEXT', content: 'TEXT', small: 'SMALLINT', key: 'VARCHAR(191)' };
    default:
      return { pk: 'BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY', big: 'BIGINT', text: 'TEXT', content: 'LONGTEXT', small: 'TINYINT', key: 'VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin' };
  }
}

/**
 * Times are epoch milliseconds in BIGINT columns: the same comparison and index behaviour on
 * every dialect, and no time-zone conversion between the driver and the server.
 */
export const migrations: readonly Migration[] = [
  {
    name: '0001-create-outbox',
    up(dialect, tables) {
      const t = columnTypes(dialect);
      const q = (n: string) => quoteIdent(dialect, n);
      const table = q(tables.outbox);
      const engine = dialect === 'mysql' || dialect === 'mariadb' ? ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4' : '';
      return [
        `CREATE TABLE IF NOT EXISTS ${table} (
  id ${t.pk},
  event_id VARCHAR(64) NOT NULL,
  event_type_name VARCHAR(255) NOT NULL,
  topic VARCHAR(255) NOT NULL,
  pubsub_name VARCHAR(255) NOT NULL,
  content ${t.content} NOT NULL,
  state ${t.small} NOT NULL DEFAULT 0,
  times_sent INTEGER NOT NULL DEFAULT 0,
  creation_time ${t.big} NOT NULL,
  modification_time ${t.big} NOT NULL,
  next_attempt_time ${t.big} NULL,
  lock_owner VARCHAR(100) NULL,
  locked_until ${t.big} NULL,
  row_version INTEGER NOT NULL DEFAULT 1,
  traceparent VARCHAR(64) NULL,
  tracestate VARCHAR(512) NULL,
  last_error ${t.text} NULL
)${engine}`,
        `CREATE UNIQUE INDEX ${q(eventIdIndex(tables.outbox))} ON ${table} (event_id)`,
        // The claim query reads `next_attempt_time <= now ORDER BY next_attempt_time`; published and
        // terminal rows have NULL there, so the index holds only live work however large the table.
        `CREATE INDEX ${q(`ix_${tables.outbox}_next_attempt`)} ON ${table} (next_attempt_time)`,
        // The cleanup query reads `state = 2 AND modification_time < ?`.
        `CREATE INDEX ${q(`ix_${tables.outbox}_state_modified`)} ON ${table} (state, modification_time)`,
      ];
    },
  },
  {
    name: '0002-create-inbox',
    up(dialect, tables) {
      const t = columnTypes(dialect);
      const q = (n: string) => quoteIdent(dialect, n);
      const table = q(tables.inbox);
      const engine = dialect === 'mysql' || dialect === 'mariadb' ? ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4' : '';
      return [
        // Case-sensitive keys: MySQL's default collation would take `Event-A` and `event-a` for
        // one id and skip a different event as a duplicate.
        `CREATE TABLE IF NOT EXISTS ${table} (
  consumer ${t.key} NOT NULL,
  event_id ${t.key} NOT NULL,
  handled_time ${t.big} NOT NULL,
  PRIMARY KEY (consumer, event_id)
)${engine}`,
        `CREATE INDEX ${q(`ix_${tables.inbox}_handled`)} ON ${table} (handled_time)`,
      ];
    },
  },
  {
    name: '0003-binary-event-ids',
    up(dialect, tables) {
      if (dialect !== 'mysql' && dialect !== 'mariadb') return [];
      const q = (n: string) => quoteIdent(dialect, n);
      // Event ids compare byte for byte: the outbox column had the table's case-insensitive default,
      // and utf8mb4_bin still pads, so `id ` and `id` were one key. The NO PAD binary collation is
      // named differently by the two servers; each statement sits in an executable comment only its
      // server runs (`/*M!` MariaDB 10.2.2+, `/*!80000` MySQL 8.0+, which MariaDB skips), so the
      // other server sees a bare ALTER TABLE that changes nothing.
      const column = (name: string, type: string, collation: string) => `MODIFY ${name} ${type} CHARACTER SET utf8mb4 COLLATE ${collation} NOT NULL`;
      const both = (table: string, columns: (collation: string) => string) => [
        `ALTER TABLE ${q(table)} /*M!100202 ${columns('utf8mb4_nopad_bin')} */`,
        `ALTER TABLE ${q(table)} /*!80000 ${columns('utf8mb4_0900_bin')} */`,
      ];
      return [
        ...both(tables.outbox, (c) => column('event_id', 'VARCHAR(64)', c)),
        ...both(tables.inbox, (c) => `${column('consumer', 'VARCHAR(191)', c)}, ${column('event_id', 'VARCHAR(191)', c)}`),
      ];
    },
  },
  {
    name: '0004-ordering-keys',
    up(dialect, tables) {
      const t = columnTypes(dialect);
      const q = (n: string) => quoteIdent(dialect, n);
      const mysql = dialect === 'mysql' || dialect === 'mariadb';
      const engine = mysql ? ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4' : '';
      // Names compare byte for byte, as in 0003 (created binary, then made NO PAD where the server has it).
      const name = mysql ? 'VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin' : 'VARCHAR(255)';
      const nopad = (table: string, columns: Array<[string, string]>) =>
        mysql
          ? [
              `ALTER TABLE ${q(table)} /*M!100202 ${columns.map(([c, type]) => `MODIFY ${c} ${type} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL`).join(', ')} */`,
              `ALTER TABLE ${q(table)} /*!80000 ${columns.map(([c, type]) => `MODIFY ${c} ${type} CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin NOT NULL`).join(', ')} */`,
            ]
          : [];
      return [
        // A keyed row's key and its place in the key's order; NULL for the rows of unkeyed events.
        `ALTER TABLE ${q(tables.outbox)} ADD ${mysql ? 'COLUMN ' : ''}ordering_key ${t.key} NULL`,
        `ALTER TABLE ${q(tables.outbox)} ADD ${mysql ? 'COLUMN ' : ''}key_sequence ${t.big} NULL`,
        `CREATE INDEX ${q(`ix_${tables.outbox}_ordering`)} ON ${q(tables.outbox)} (ordering_key, key_sequence)`,
        // One row per (pubsub, topic, key): the writers of a key take turns on it, so sequence
        // numbers follow commit order with no gap; the relay moves `next_sequence` on as it publishes.
        `CREATE TABLE IF NOT EXISTS ${q(tables.outboxKeys)} (
  pubsub_name ${name} NOT NULL,
  topic ${name} NOT NULL,
  ordering_key ${t.key} NOT NULL,
  last_sequence ${t.big} NOT NULL,
  next_sequence ${t.big} NOT NULL,
  modification_time ${t.big} NOT NULL,
  PRIMARY KEY (pubsub_name, topic, ordering_key)
)${engine}`,
        ...nopad(tables.outboxKeys, [['pubsub_name', 'VARCHAR(255)'], ['topic', 'VARCHAR(255)'], ['ordering_key', 'VARCHAR(191)']]),
        // The last sequence each consumer handled per key, and since when it waits for the next.
        `CREATE TABLE IF NOT EXISTS ${q(tables.inboxKeys)} (
  consumer ${t.key} NOT NULL,
  ordering_key ${t.key} NOT NULL,
  last_sequence ${t.big} NOT NULL,
  waiting_since ${t.big} NULL,
  modification_time ${t.big} NOT NULL,
  PRIMARY KEY (consumer, ordering_key)
)${engine}`,
        ...nopad(tables.inboxKeys, [['consumer', 'VARCHAR(191)'], ['ordering_key', 'VARCHAR(191)']]),
        ...nopad(tables.outbox, [['ordering_key', 'VARCHAR(191)']]).map((s) => s.replace(' NOT NULL', ' NULL')),
      ];
    },
  },
];

/**
 * Runs the migrations that have not run yet, in order, and records each. Safe to call at every
 * start and from several processes at once: on PostgreSQL and MySQL/MariaDB the runners take
 * turns under a lock, and the next one finds every step recorded; on SQLite a second runner finds
 * the step recorded or the objects present.
 */
export async function runMigrations(
  sequelize: Sequelize,
  tables: TableNames = DEFAULT_TABLE_NAMES,
  steps: readonly Migration[] = migrations,
): Promise<string[]> {
  const dialect = dialectOf(sequelize);
  const apply = (tx: Transaction | null) => applySteps(sequelize, dialect, tables, steps, tx);
  if (dialect === 'postgres') return underPostgresLock(sequelize, tables, apply);
  if (dialect === 'mysql' || dialect === 'mariadb') return underMysqlLock(sequelize, tables, apply);
  return apply(null);
}

/**
 * Two PostgreSQL sessions running `CREATE TABLE IF NOT EXISTS` for one table at once can both
 * pass the check, and the second then fails on the table's row type
 * (`pg_type_typname_nsp_index`): tolerating "already exists" does not cover it. So the whole run
 * is one transaction holding an advisory lock keyed by the migrations table's name; the lock
 * ends with it, also when the process dies. The next runner then finds every step recorded.
 * (So a step's statements must be allowed in a transaction: no CREATE INDEX CONCURRENTLY.)
 */
async function underPostgresLock<T>(sequelize: Sequelize, tables: TableNames, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  const key = createHash('sha256').update(`dapr-outbox migrations ${tables.migrations}`).digest().readBigInt64BE(0);
  const tx = await sequelize.transaction();
  try {
    await sequelize.query('SELECT pg_advisory_xact_lock(CAST(? AS BIGINT))', { replacements: [key.toString()], raw: true, transaction: tx });
    const result = await fn(tx);
    await commitTransaction(tx);
    return result;
  } catch (err) {
    if (!(tx as unknown as { finished?: string }).finished) await tx.rollback().catch(() => {});
    throw err;
  }
}

/**
 * MySQL/MariaDB survive concurrent runners without a lock (the statements tolerate objects that
 * are there), but every runner then runs every step, which a step that is not idempotent would
 * not survive. GET_LOCK is held by a session, not a transaction, and the server commits at each
 * DDL statement anyway: the transaction only keeps the whole run on the one connection that
 * holds the lock. Lock names are server-wide, hence the database's name in it.
 */
async function underMysqlLock<T>(sequelize: Sequelize, tables: TableNames, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  const name = "CONCAT('dapr_outbox_', SHA1(CONCAT(DATABASE(), '.', ?)))";
  const tx = await sequelize.transaction();
  try {
    const [rows] = await sequelize.query(`SELECT GET_LOCK(${name}, ?) AS locked`, {
      replacements: [tables.migrations, MYSQL_LOCK_TIMEOUT_SECONDS],
      raw: true,
      transaction: tx,
    });
    const locked = Number((rows as Array<{ locked: unknown }>)[0]?.locked);
    if (locked !== 1) throw new OutboxError(`another process held the migrations lock for ${MYSQL_LOCK_TIMEOUT_SECONDS} s`);
    let result: T;
    try {
      result = await fn(tx);
    } finally {
      // Before the commit: the connection goes back to the pool with the lock otherwise. When the
      // release fails, the connection is gone and its lock with it.
      await sequelize.query(`DO RELEASE_LOCK(${name})`, { replacements: [tables.migrations], raw: true, transaction: tx }).catch(() => {});
    }
    await tx.commit();
    return result;
  } catch (err) {
    if (!(tx as unknown as { finished?: string }).finished) await tx.rollback().catch(() => {});
    throw err;
  }
}

/** How long a runner waits for another's migrations on MySQL/MariaDB (PostgreSQL waits as long as it takes). */
const MYSQL_LOCK_TIMEOUT_SECONDS = 600;

async function applySteps(
  sequelize: Sequelize,
  dialect: SqlDialect,
  tables: TableNames,
  steps: readonly Migration[],
  tx: Transaction | null,
): Promise<string[]> {
  const q = (n: string) => quoteIdent(dialect, n);
  const log = q(tables.migrations);
  const exec = (sql: string, replacements?: unknown[]) => sequelize.query(sql, { replacements, raw: true, transaction: tx });
  // An object already there (made by hand, or by a runner of an older version) is not an error.
  // In a PostgreSQL transaction a failed statement aborts everything after it, unless it ran
  // under a savepoint that is rolled back.
  const savepoint = tx !== null && dialect === 'postgres';
  const tolerant = async (sql: string, replacements?: unknown[]) => {
    if (savepoint) await exec('SAVEPOINT dapr_outbox_step');
    try {
      await exec(sql, replacements);
      if (savepoint) await exec('RELEASE SAVEPOINT dapr_outbox_step');
    } catch (err) {
      if (savepoint) await exec('ROLLBACK TO SAVEPOINT dapr_outbox_step');
      if (!alreadyExists(err)) throw err;
    }
  };
  await exec(`CREATE TABLE IF NOT EXISTS ${log} (name VARCHAR(191) NOT NULL PRIMARY KEY, run_time ${columnTypes(dialect).big} NOT NULL)`);
  const [rows] = await exec(`SELECT name FROM ${log}`);
  const done = new Set((rows as Array<{ name: string }>).map((r) => r.name));
  const applied: string[] = [];
  for (const step of steps) {
    if (done.has(step.name)) continue;
    for (const statement of step.up(dialect, tables)) await tolerant(statement);
    await tolerant(`INSERT INTO ${log} (name, run_time) VALUES (?, ?)`, [step.name, Date.now()]);
    applied.push(step.name);
  }
  return applied;
}

/** A concurrent runner got there first: duplicate index or migration record. */
function alreadyExists(err: unknown): boolean {
  const e = err as { name?: string; message?: unknown; parent?: { message?: unknown } } | undefined;
  if (e?.name === 'SequelizeUniqueConstraintError') return true;
  const message = `${String(e?.message ?? '')} ${String(e?.parent?.message ?? '')}`;
  return /already exists|Duplicate key name|Duplicate column name|Duplicate entry|UNIQUE constraint failed|duplicate key value/i.test(message);
}
