/**
 * A fresh database per figure, as the tests make them (test/support/db.ts): a new MariaDB or
 * PostgreSQL database (CREATE DATABASE b_xxx, dropped at the end) or a new SQLite file. Every one opened is
 * registered, so that run.ts can drop what a crashed figure left behind.
 */
import { QueryTypes, Sequelize, type Options } from 'sequelize';
import { createTestDb, type DbKind, type TestDb } from '../../test/support/db';

export type { DbKind };

export const MYSQL_URL = process.env.BENCH_MYSQL_URL ?? process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
export const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A test database (see test/support/db.ts) whose close() is idempotent and tracked. */
export type BenchDb = TestDb;

const open = new Set<BenchDb>();
/** Closes under way, so that a cleanup on a signal waits for them instead of cutting a DROP short. */
const closing = new Set<Promise<void>>();

/** Makes close() idempotent and visible to closeAllDbs() while it runs. */
function tracked(db: BenchDb, close: () => Promise<void>): () => Promise<void> {
  let once: Promise<void> | undefined;
  return () => {
    if (!once) {
      open.delete(db);
      once = close();
      closing.add(once);
      void once.finally(() => closing.delete(once!)).catch(() => {});
    }
    return once;
  };
}

/** Pool size of every bench pool: what a small service would set, and the same on both sides. */
export const POOL_MAX = 10;

export async function createBenchDb(kind: DbKind, options: Options = {}): Promise<BenchDb> {
  const made = await createTestDb(kind, { pool: { max: POOL_MAX }, ...options }, { mysqlUrl: MYSQL_URL, postgresUrl: POSTGRES_URL, prefix: 'b_' });
  const db: BenchDb = { ...made, close: async () => {} };
  db.close = tracked(db, () => made.close().catch(() => {}));
  open.add(db);
  return db;
}

/** Drops every database still open (after a crash in a figure). */
export async function closeAllDbs(): Promise<void> {
  for (const db of [...open]) await db.close().catch(() => {});
  await Promise.all([...closing].map((p) => p.catch(() => {})));
}

/** The server's version string, or null when MariaDB is not reachable. */
export function mysqlVersion(): Promise<string | null> {
  return serverVersion(MYSQL_URL, 'SELECT VERSION() AS v');
}

/** PostgreSQL's version number (server_version), or null when it is not reachable. */
export function postgresVersion(): Promise<string | null> {
  return serverVersion(POSTGRES_URL, 'SHOW server_version');
}

async function serverVersion(url: string, sql: string): Promise<string | null> {
  const admin = new Sequelize(url, { logging: false, retry: { max: 0 } });
  try {
    const [row] = (await admin.query(sql, { type: QueryTypes.SELECT })) as Array<Record<string, unknown>>;
    const v = row ? Object.values(row)[0] : undefined;
    return v === undefined || v === null ? null : String(v);
  } catch {
    return null;
  } finally {
    await admin.close().catch(() => {});
  }
}
