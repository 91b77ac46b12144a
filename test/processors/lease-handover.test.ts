/**
 * A row in one replica's local retry queue that another replica has claimed meanwhile (its lease
 * ran out on the database's timeline) is the other replica's to publish: the local retry drops it.
 */
import assert from 'node:assert/strict';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { GatedPublisher, TestClock, makeOutbox, until, type Harness } from './helpers';

for (const kind of testDialects()) {
  describe(`processors: a local retry after another replica claimed the row (${kind})`, () => {
    let db: TestDb;
    const harnesses: Harness[] = [];
    before(async () => (db = await createTestDb(kind)));
    after(async () => {
      for (const h of harnesses) await h.outbox.close();
      await db?.close();
    });

    it('does not publish it locally', async () => {
      const start = Date.now();
      const a = await makeOutbox(db.sequelize, { instanceId: 'replica-a', clock: new TestClock(start), publisher: new RecordingPublisher() });
      const gated = new GatedPublisher();
      const b = await makeOutbox(db.another(), { instanceId: 'replica-b', clock: new TestClock(start), publisher: gated });
      harnesses.push(a, b);

      a.publisher.failNext(1);
      await a.outbox.bus.publish({ id: 'handed-over', topic: 'orders' });
      await a.outbox.drain();
      assert.deepEqual(a.failed, ['handed-over'], 'the failed publish waits in the local queue');

      // B sees the lease over and claims the row; its publish is still under way.
      b.clock.advance(a.outbox.tuning.leaseTime + 1);
      gated.hold();
      const claiming = b.outbox.runPass('retry-by-database');
      await until(() => gated.waiting > 0);

      // Where the relay holds the row under a lock while it publishes (SKIP LOCKED databases), A's
      // lease check waits for B's transaction; with leases it answers at once. Either way A must
      // not publish the row.
      const local = a.outbox.runPass('retry-by-local-queue');
      await Promise.race([local, new Promise((resolve) => setTimeout(resolve, 100))]);
      assert.deepEqual(a.publisher.ids(), [], 'A left the row to B');
      gated.release();
      assert.equal(await local, 1, 'the item left A\'s local queue');
      assert.deepEqual(a.publisher.ids(), [], 'A left the row to B');
      assert.equal(await a.outbox.runPass('retry-by-local-queue'), 0);
      assert.equal(await claiming, 1);
      assert.deepEqual(gated.ids(), ['handed-over']);
      assert.equal((await a.outbox.stats()).published, 1);
      assert.deepEqual([...a.errors, ...b.errors], []);
    });
  });
}
