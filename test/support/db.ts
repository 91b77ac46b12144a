import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sequelize, type Options } from 'sequelize';

export type DbKind = 'sqlite' | 'mysql';

/** SQLite always; MariaDB/MySQL when TEST_MYSQL_URL is set (CI always sets it). */
export function testDialects(): DbKind[] {
  return process.env.TEST_MYSQL_URL ? ['sqlite', 'mysql'] : ['sqlite'];
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

/**
 * A clean database for one test file (or one test): a fresh SQLite file, or a fresh MariaDB
 * database created for it and dropped at close.
 */
export async function createTestDb(kind: DbKind, options: Options = {}): Promise<TestDb> {
  const extra: Sequelize[] = [];
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'dapr-outbox-test-'));
    const storage = join(dir, 'test.db');
    const make = (o: Options = {}) => new Sequelize({ dialect: 'sqlite', storage, logging: false, ...options, ...o });
    const sequelize = make();
    return {
      kind,
      sequelize,
      url: `sqlite:${storage}`,
      another(o) {
        const s = make(o);
        extra.push(s);
        return s;
      },
      async close() {
        for (const s of extra) await s.close();
        await sequelize.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const base = process.env.TEST_MYSQL_URL;
  if (!base) throw new Error('TEST_MYSQL_URL is not set');
  const name = `t_${randomBytes(5).toString('hex')}`;
  const admin = new Sequelize(base, { logging: false });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.close();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const make = (o: Options = {}) => new Sequelize(url.toString(), { logging: false, pool: { max: 10 }, ...options, ...o });
  const sequelize = make();
  return {
    kind,
    sequelize,
    url: url.toString(),
    another(o) {
      const s = make(o);
      extra.push(s);
      return s;
    },
    async close() {
      for (const s of extra) await s.close();
      await sequelize.close();
      const dropper = new Sequelize(base, { logging: false });
      await dropper.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await dropper.close();
    },
  };
}
