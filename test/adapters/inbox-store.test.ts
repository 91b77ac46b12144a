import assert from 'node:assert/strict';
import { runMigrations, SequelizeInboxStore } from '../../src/extend';
import { inTransaction } from '../../src/adapters/sequelize/transactions';
import { createTestDb, testDialects, type TestDb } from '../support/db';

for (const kind of testDialects()) {
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
