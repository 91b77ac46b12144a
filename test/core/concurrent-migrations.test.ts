import assert from 'node:assert/strict';
import { join } from 'node:path';
import { QueryTypes } from 'sequelize';
import { migrations, runMigrations } from '../../src/extend';
import { createTestDb, requirePostgres, type DbKind, type TestDb } from '../support/db';
import { run, type Child } from '../support/processes';

const FIXTURE = join(__dirname, 'fixtures', 'migrate.ts');
const RUNNERS = 4;

const TABLES_SQL: Record<Exclude<DbKind, 'sqlite'>, string> = {
  postgres: `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`,
  mysql: `SELECT table_name AS tablename FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name`,
};

function exitCode(child: Child): Promise<number | null> {
  const { proc } = child;
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

const kinds: Array<Exclude<DbKind, 'sqlite'>> = process.env.TEST_MYSQL_URL ? ['postgres', 'mysql'] : ['postgres'];

for (const kind of kinds) {
  describe(`migrate() from several processes at once (${kind})`, () => {
    let db: TestDb | undefined;
    const children: Child[] = [];
    before(function () {
      if (kind === 'postgres') requirePostgres(this);
    });
    beforeEach(async () => {
      db = await createTestDb(kind);
    });
    afterEach(async () => {
      for (const child of children.splice(0)) await child.stop('SIGKILL');
      await db?.close();
    });

    it(`${RUNNERS} processes migrating one fresh database all succeed; each step runs once and the tables exist once`, async () => {
      for (let i = 0; i < RUNNERS; i++) {
        children.push(run(process.execPath, ['--import', 'tsx', FIXTURE], { env: { DATABASE_URL: db!.url } }));
      }
      await Promise.all(children.map((c) => c.waitFor(/^ready$/m)));
      // All at once: each has its connection open and waits for the signal.
      const results = children.map((c) => c.waitFor(/^(migrated|failed) (.*)$/m));
      for (const c of children) c.proc.kill('SIGUSR2');
      const outcomes = await Promise.all(results);
      const failures = outcomes.filter((m) => m[1] === 'failed').map((m) => m[2]);
      assert.deepEqual(failures, [], `${failures.length} of ${RUNNERS} runners failed`);

      // The runners took turns: the first applied every step, the others found them recorded.
      const applied = outcomes.flatMap((m) => JSON.parse(m[2]!) as string[]).sort();
      assert.deepEqual(applied, migrations.map((m) => m.name).sort());
      const tables = (await db!.sequelize.query(TABLES_SQL[kind], { type: QueryTypes.SELECT })) as Array<{ tablename: string }>;
      assert.deepEqual(tables.map((t) => t.tablename), ['dapr_outbox_migrations', 'integration_event_inbox', 'integration_event_inbox_keys', 'integration_event_log', 'integration_event_log_keys']);
      const recorded = (await db!.sequelize.query('SELECT name FROM dapr_outbox_migrations ORDER BY name', { type: QueryTypes.SELECT })) as Array<{ name: string }>;
      assert.deepEqual(recorded.map((r) => r.name), migrations.map((m) => m.name));
      for (const c of children) assert.equal(await exitCode(c), 0);
    });

    it('a runner that finished does not hold up the next one', async () => {
      const started = Date.now();
      for (let i = 0; i < 3; i++) await runMigrations(db!.another());
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    });
  });
}
