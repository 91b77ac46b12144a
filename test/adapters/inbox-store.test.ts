import assert from 'node:assert/strict';
import { runMigrations, SequelizeInboxStore } from '../../src/extend';
import { inTransaction } from '../../src/adapters/sequelize/transactions';
import { supportsInsertReturning } from '../../src/adapters/sequelize/dialect';
import { createTestDb, testDialects, type DbKind, type TestDb } from '../support/db';

describe('supportsInsertReturning', () => {
  it('is true for MariaDB 10.5 and later, false for MySQL and older MariaDB', () => {
    assert.equal(supportsInsertReturning('10.11.19-MariaDB-0+deb12u1'), true);
    assert.equal(supportsInsertReturning('10.5.0-MariaDB'), true);
    assert.equal(supportsInsertReturning('11.4.2-MariaDB'), true);
    assert.equal(supportsInsertReturning('10.4.32-MariaDB'), false);
    assert.equal(supportsInsertReturning('8.0.36'), false);
  });
});

const dialects: DbKind[] = [...testDialects(), ...(process.env.TEST_POSTGRES_URL && !testDialects().includes('postgres') ? (['postgres'] as const) : [])];

for (const kind of dialects) {
  describe(`SequelizeInboxStore (${kind})`, () => {
    let db: TestDb;
    let store: SequelizeInboxStore;
    before(async () => {
      db = await createTestDb(kind);
      await runMigrations(db.sequelize);
      store = new SequelizeInboxStore(db.sequelize, 'integration_event_inbox');
    });
    after(() => db.close());

    const record = (consumer: string, id: string) => inTransaction(db.sequelize, (tx) => store.record(consumer, id, tx, Date.now()));

    it('says true the first time and false for a duplicate', async () => {
      assert.equal(await record('billing', 'evt-1'), true);
      assert.equal(await record('billing', 'evt-1'), false);
      assert.equal(await record('shipping', 'evt-1'), true, 'another consumer is another key');
    });

    it('tells ids apart by case', async () => {
      assert.equal(await record('billing', 'Event-A'), true);
      assert.equal(await record('billing', 'event-a'), true);
      assert.equal(await record('billing', 'Event-A'), false);
    });

    it('forgets nothing when the recording transaction rolls back', async () => {
      await assert.rejects(
        inTransaction(db.sequelize, async (tx) => {
          assert.equal(await store.record('billing', 'evt-rolled-back', tx, Date.now()), true);
          throw new Error('handler failed');
        }),
      );
      assert.equal(await record('billing', 'evt-rolled-back'), true);
    });

    it('records many keys in one call and tells which are new, in order', async () => {
      assert.equal(await record('bulk', 'b-2'), true);
      const keys = ['b-1', 'b-2', 'b-3'].map((eventId) => ({ consumer: 'bulk', eventId }));
      assert.deepEqual(await inTransaction(db.sequelize, (tx) => store.recordAll(keys, tx, Date.now())), [true, false, true]);
      assert.deepEqual(await inTransaction(db.sequelize, (tx) => store.recordAll(keys, tx, Date.now())), [false, false, false]);
      // More keys than one INSERT takes.
      const many = Array.from({ length: 1203 }, (_, i) => ({ consumer: 'bulk-many', eventId: `m-${i}` }));
      const flags = await inTransaction(db.sequelize, (tx) => store.recordAll(many, tx, Date.now()));
      assert.equal(flags.filter(Boolean).length, 1203);
      await inTransaction(db.sequelize, (tx) => store.remove(many.slice(1), tx));
      assert.equal(await record('bulk-many', 'm-0'), false);
      assert.equal(await record('bulk-many', 'm-1'), true, 'removed keys are new again');
      await inTransaction(db.sequelize, (tx) => store.remove(many, tx));
      await inTransaction(db.sequelize, (tx) => store.remove(keys, tx));
    });

    it('deletes old entries in bounded batches', async () => {
      const before = Date.now() + 1;
      const deleted = await store.deleteOlderThan(before, 2);
      assert.equal(deleted, 2);
      let total = deleted;
      for (let n = deleted; n > 0; total += n) n = await store.deleteOlderThan(before, 2);
      assert.equal(total, 5);
      assert.equal(await record('billing', 'evt-1'), true, 'forgotten once deleted');
    });
  });
}
