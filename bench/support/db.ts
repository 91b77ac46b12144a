/**
 * A fresh database per figure, as the tests make them (test/support/db.ts): a new MariaDB
 * database (CREATE DATABASE b_xxx, dropped at the end) or a new SQLite file. Every one opened is
 * registered, so that run.ts can drop what a crashed figure left behind.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueryTypes, Sequelize, type Options } from 'sequelize';

export type DbKind = 'mysql' | 'sqlite';

export const MYSQL_URL = process.env.BENCH_MYSQL_URL ?? process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export interface BenchDb {
  kind: DbKind;
  sequelize: Sequelize;
  /** A URL another process can use to reach the same database. */
  url: string;
  /** One more connection pool on the same database (another "instance" of the service). */
  another(options?: Options): Sequelize;
  close(): Promise<void>;
}

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
  const pools: Sequelize[] = [];
  let db: BenchDb;
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'dapr-outbox-bench-'));
    const storage = join(dir, 'bench.db');
    const make = (o: Options = {}) => new Sequelize({ dialect: 'sqlite', storage, logging: false, ...options, ...o });
    const sequelize = make();
    db = {
      kind,
      sequelize,
      url: `sqlite:${storage}`,
      another(o) {
        const s = make(o);
        pools.push(s);
        return s;
      },
      close: async () => {},
    };
    db.close = tracked(db, async () => {
      for (const s of pools) await s.close().catch(() => {});
      await sequelize.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    });
  } else {
    const name = `b_${randomBytes(5).toString('hex')}`;
    await adminQuery(`CREATE DATABASE \`${name}\``);
    const url = new URL(MYSQL_URL);
    url.pathname = `/${name}`;
    const make = (o: Options = {}) => new Sequelize(url.toString(), { logging: false, pool: { max: POOL_MAX }, ...options, ...o });
    const sequelize = make();
    db = {
      kind,
      sequelize,
      url: url.toString(),
      another(o) {
        const s = make(o);
        pools.push(s);
        return s;
      },
      close: async () => {},
    };
    db.close = tracked(db, async () => {
      for (const s of pools) await s.close().catch(() => {});
      await sequelize.close().catch(() => {});
      await adminQuery(`DROP DATABASE IF EXISTS \`${name}\``);
    });
  }
  open.add(db);
  return db;
}

/** Drops every database still open (after a crash in a figure). */
export async function closeAllDbs(): Promise<void> {
  for (const db of [...open]) await db.close().catch(() => {});
  await Promise.all([...closing].map((p) => p.catch(() => {})));
}

async function adminQuery(sql: string): Promise<void> {
  const admin = new Sequelize(MYSQL_URL, { logging: false });
  try {
    await admin.query(sql);
  } finally {
    await admin.close();
  }
}

/** The server's version string, or null when MariaDB is not reachable. */
export async function mysqlVersion(): Promise<string | null> {
  const admin = new Sequelize(MYSQL_URL, { logging: false, retry: { max: 0 } });
  try {
    const [row] = (await admin.query('SELECT VERSION() AS v', { type: QueryTypes.SELECT })) as Array<{ v: string }>;
    return row?.v ?? null;
  } catch {
    return null;
  } finally {
    await admin.close().catch(() => {});
  }
}
