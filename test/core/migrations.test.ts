import assert from 'node:assert/strict';
import { QueryTypes } from 'sequelize';
import { createOutbox } from '../../src';
import { migrations, runMigrations, SequelizeOutboxStore } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';

for (const kind of testDialects()) {
  describe(`migrations (${kind})`, () => {
    let db: TestDb;
    beforeEach(async () => (db = await createTestDb(kind)));
    afterEach(() => db.close());

    it('creates the outbox and inbox tables once, and is idempotent', async () => {
      const outbox = createOutbox({ sequelize: db.sequelize, publisher: new RecordingPublisher() });
      assert.deepEqual(await outbox.migrate(), migrations.map((m) => m.name));
      assert.deepEqual(await outbox.migrate(), []);
      const recorded = await db.sequelize.query('SELECT name FROM dapr_outbox_migrations ORDER BY name', { type: QueryTypes.SELECT });
      assert.deepEqual(recorded.map((r) => (r as { name: string }).name), migrations.map((m) => m.name));
      const columns = Object.keys(await db.sequelize.getQueryInterface().describeTable('integration_event_log'));
      for (const c of ['id', 'event_id', 'event_type_name', 'topic', 'pubsub_name', 'content', 'state', 'times_sent', 'creation_time', 'modification_time', 'next_attempt_time', 'lock_owner', 'locked_until', 'row_version', 'traceparent', 'last_error']) {
        assert.ok(columns.includes(c), `column ${c}`);
      }
      await outbox.close();
    });

    it('upgrades a database of the first three steps: old rows stay unkeyed and still go out', async () => {
      assert.deepEqual(await runMigrations(db.sequelize, undefined, migrations.slice(0, 3)), migrations.slice(0, 3).map((m) => m.name));
      const store = new SequelizeOutboxStore(db.sequelize, 'integration_event_log');
      await db.sequelize.query(
        "INSERT INTO integration_event_log (event_id, event_type_name, topic, pubsub_name, content, state, times_sent, creation_time, modification_time, next_attempt_time) VALUES ('old-1', 'E', 't', 'pubsub', '{}', 0, 0, 1, 1, 1)",
      );
      assert.deepEqual(await runMigrations(db.sequelize), ['0004-ordering-keys']);
      const [row] = await store.find(['old-1']);
      assert.equal(row!.orderingKey, null);
      assert.equal(row!.sequence, null);
      const publisher = new RecordingPublisher();
      const outbox = createOutbox({ sequelize: db.sequelize, publisher });
      await outbox.runPass('retry-by-database');
      assert.deepEqual(publisher.ids(), ['old-1']);
      await outbox.close();
    });

    it('survives concurrent runners', async () => {
      const other = db.another();
      const [a, b] = await Promise.all([runMigrations(db.sequelize), runMigrations(other)]);
      assert.equal(a.length + b.length >= migrations.length, true);
      assert.deepEqual(await runMigrations(db.sequelize), []);
    });

    it('honours custom table names', async () => {
      const outbox = createOutbox({ sequelize: db.sequelize, publisher: new RecordingPublisher(), tables: { outbox: 'my_outbox', inbox: 'my_inbox', migrations: 'my_migrations' } });
      await outbox.migrate();
      const tables = (await db.sequelize.getQueryInterface().showAllTables()).map((t) => (typeof t === 'string' ? t : (t as { tableName: string }).tableName));
      for (const t of ['my_outbox', 'my_inbox', 'my_migrations', 'my_outbox_keys', 'my_inbox_keys']) assert.ok(tables.includes(t), t);
      await outbox.bus.publish({ id: 'e-1', topic: 'plain' });
      await outbox.drain();
      assert.equal((await outbox.stats()).published, 1);
      await outbox.close();
    });

    it('takes the longest table names it accepts, and every index of theirs gets a name of its own', async () => {
      const max = { mysql: 46, postgres: 58, sqlite: 58 }[kind];
      const outboxName = `o${'x'.repeat(max - 1)}`;
      const inboxName = `i${'x'.repeat(max - 1)}`;
      const outbox = createOutbox({ sequelize: db.sequelize, publisher: new RecordingPublisher(), tables: { outbox: outboxName, inbox: inboxName } });
      await outbox.migrate();
      await outbox.bus.publish({ id: 'e-long', topic: 'plain' });
      await outbox.drain();
      assert.equal((await outbox.stats()).published, 1);
      await outbox.close();
      const indexes = new Set<string>();
      for (const table of [outboxName, inboxName]) {
        for (const ix of (await db.sequelize.getQueryInterface().showIndex(table)) as Array<{ name: string }>) indexes.add(ix.name);
      }
      // PostgreSQL keeps the first 63 characters of a name.
      const names = [`ux_${outboxName}_event_id`, `ix_${outboxName}_next_attempt`, `ix_${outboxName}_state_modified`, `ix_${outboxName}_ordering`, `ix_${inboxName}_handled`];
      for (const name of names.map((n) => (kind === 'postgres' ? n.slice(0, 63) : n))) assert.ok(indexes.has(name), `${name} among ${[...indexes].join(', ')}`);
      assert.throws(
        () => createOutbox({ sequelize: db.sequelize, publisher: new RecordingPublisher(), tables: { outbox: `o${'x'.repeat(max)}` } }),
        new RegExp(`tables\\.outbox must be an identifier of letters, digits and _, at most ${max} characters`),
      );
    });
  });
}
