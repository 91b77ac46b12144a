import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sequelize, type Options } from 'sequelize';

export type DbKind = 'sqlite' | 'mysql' | 'postgres';

/**
 * SQLite always; MariaDB/MySQL when TEST_MYSQL_URL is set, PostgreSQL when TEST_POSTGRES_URL is
 * set (CI sets both).
 */
export function testDialects(): DbKind[] {
  const kinds: DbKind[] = ['sqlite'];
  if (process.env.TEST_MYSQL_URL) kinds.push('mysql');
  if (process.env.TEST_POSTGRES_URL) kinds.push('postgres');
  return kinds;
}

/** The database servers of testDialects(): MariaDB/MySQL and PostgreSQL when their URLs are set. */
export function serverDialects(): Array<Exclude<DbKind, 'sqlite'>> {
  return testDialects().filter((k): k is Exclude<DbKind, 'sqlite'> => k !== 'sqlite');
}

/** The server URL a kind's test databases are made on (its own database is only used to connect). */
export function serverUrl(kind: Exclude<DbKind, 'sqlite'>): string {
  const url = kind === 'postgres' ? process.env.TEST_POSTGRES_URL : process.env.TEST_MYSQL_URL;
  if (!url) throw new Error(`${kind === 'postgres' ? 'TEST_POSTGRES_URL' : 'TEST_MYSQL_URL'} is not set`);
  return url;
}

/**
 * For PostgreSQL-only suites, from a `before` hook: `before(function () { requirePostgres(this); })`.
 * Without TEST_POSTGRES_URL the suite is skipped, and the log says what to set to run it.
 */
export function requirePostgres(ctx: Mocha.Context): void {
  if (process.env.TEST_POSTGRES_URL) return;
  const suite = ctx.test?.parent?.fullTitle() ?? 'PostgreSQL tests';
  console.log(`      skipped "${suite}": set TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it`);
  ctx.skip();
}

export interface TestDb {
  kind: DbKind;
  sequelize: Sequelize;
  /** A URL another process can use to reach the same database. */
  url: string;
  /** Opens one more connection pool on the same database (another "replica"). */
  another(options?: Options): Sequelize;
  close(): Promise<void>;
}

/** Where createTestDb makes MariaDB and PostgreSQL databases, and how it names them. */
export interface TestDbSettings {
  /** Server URL (its database is only used to connect). Default: env TEST_MYSQL_URL. */
  mysqlUrl?: string;
  /** Server URL (its database is only used to connect). Default: env TEST_POSTGRES_URL. */
  postgresUrl?: string;
  /** Prefix of the database names. Default 't_'. */
  prefix?: string;
}

/**
 * A clean database for one test file (or one test): a fresh SQLite file, or a fresh MariaDB or
 * PostgreSQL database created for it and dropped at close.
 */
export async function createTestDb(kind: DbKind, options: Options = {}, settings: TestDbSettings = {}): Promise<TestDb> {
  let url: string;
  let make: (o?: Options) => Sequelize;
  let drop: () => Promise<void>;
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'dapr-outbox-test-'));
    const storage = join(dir, 'test.db');
    url = `sqlite:${storage}`;
    make = (o = {}) => new Sequelize({ dialect: 'sqlite', storage, logging: false, ...options, ...o });
    drop = async () => rmSync(dir, { recursive: true, force: true });
  } else if (kind === 'postgres') {
    const base = settings.postgresUrl ?? serverUrl('postgres');
    const name = `${settings.prefix ?? 't_'}${randomBytes(5).toString('hex')}`;
    await adminQuery(base, `CREATE DATABASE "${name}"`);
    const server = new URL(base);
    server.pathname = `/${name}`;
    url = server.toString();
    make = (o = {}) => new Sequelize(url, { logging: false, pool: { max: 10 }, ...options, ...o });
    // DROP DATABASE refuses while anyone is connected, and a test that failed half-way may have
    // left a pool (or a child process) behind.
    drop = () =>
      adminQuery(base, [
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`,
        `DROP DATABASE IF EXISTS "${name}"`,
      ]);
  } else {
    const base = settings.mysqlUrl ?? serverUrl('mysql');
    const name = `${settings.prefix ?? 't_'}${randomBytes(5).toString('hex')}`;
    await adminQuery(base, `CREATE DATABASE \`${name}\``);
    const server = new URL(base);
    server.pathname = `/${name}`;
    url = server.toString();
    make = (o = {}) => new Sequelize(url, { logging: false, pool: { max: 10 }, ...options, ...o });
    drop = () => adminQuery(base, `DROP DATABASE IF EXISTS \`${name}\``);
  }
  const sequelize = make();
  const extra: Sequelize[] = [];
  return {
    kind,
    sequelize,
    url,
    another(o) {
      const s = make(o);
      extra.push(s);
      return s;
    },
    async close() {
      for (const s of extra) await s.close();
      await sequelize.close();
      await drop();
    },
  };
}

async function adminQuery(serverUrl: string, sql: string | string[]): Promise<void> {
  const admin = new Sequelize(serverUrl, { logging: false });
  try {
    for (const statement of typeof sql === 'string' ? [sql] : sql) await admin.query(statement);
  } finally {
    await admin.close();
  }
}
