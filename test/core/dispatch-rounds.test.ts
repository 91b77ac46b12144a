/**
 * Publishing after commit goes in rounds: at once when nothing is in flight, and, while a publish
 * call is in flight, the events committed meanwhile wait and go out together in one bulk call.
 */
import assert from 'node:assert/strict';
import { IntegrationEvent } from '../../src';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { GatedPublisher, makeOutbox, until, type Harness } from '../processors/helpers';

class Shipped extends IntegrationEvent {
  constructor(public n: number) {
    super();
  }
}

for (const kind of testDialects()) {
  describe(`post-commit publishing in rounds (${kind})`, () => {
    let db: TestDb;
    let h: Harness;
    let publisher: GatedPublisher;

    beforeEach(async () => {
      db = await createTestDb(kind);
      publisher = new GatedPublisher();
      h = await makeOutbox(db.sequelize, { publisher });
    });
    afterEach(async () => {
      publisher.release();
      await h.outbox.close();
      await db.close();
    });

    it('publishes an event at once when nothing is in flight', async () => {
      await h.outbox.runInUnitOfWork(() => h.outbox.bus.publish(new Shipped(1)));
      await h.outbox.drain();
      assert.equal(publisher.messages.length, 1);
      assert.deepEqual(publisher.bulkCalls, [], 'a single publish, no bulk call');
    });

    it('events committed while a publish is in flight go out together in the next round, each marked Published', async () => {
      publisher.hold();
      await h.outbox.runInUnitOfWork(() => h.outbox.bus.publish(new Shipped(0)));
      await until(() => publisher.waiting === 1);
      for (let i = 1; i <= 5; i++) await h.outbox.runInUnitOfWork(() => h.outbox.bus.publish(new Shipped(i)));
      assert.equal(publisher.waiting, 1, 'the five wait for the round in flight');
      publisher.release();
      await h.outbox.drain();
      assert.deepEqual(publisher.bulkCalls, [5], 'one bulk call for the five');
      assert.equal(publisher.messages.length, 6);
      assert.equal((await h.outbox.stats()).published, 6);
    });

    it('a failed entry of a round fails alone', async () => {
      publisher.hold();
      await h.outbox.runInUnitOfWork(() => h.outbox.bus.publish(new Shipped(0)));
      await until(() => publisher.waiting === 1);
      for (let i = 1; i <= 3; i++) await h.outbox.runInUnitOfWork(() => h.outbox.bus.publish(new Shipped(i)));
      publisher.failNext(1);
      publisher.release();
      await h.outbox.drain();
      assert.equal(h.failed.length, 1);
      const stats = await h.outbox.stats();
      assert.equal(stats.published, 3);
      assert.equal(stats.published + stats.inProgress + stats.notPublished + stats.publishedFailed, 4);
    });
  });
}
