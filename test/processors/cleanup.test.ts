import assert from 'node:assert/strict';
import { IntegrationEvent } from '../../src';
import { dialectOf, quoteIdent } from '../../src/adapters/sequelize/dialect';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { makeOutbox, seedRows, type Harness } from './helpers';

class Shipped extends IntegrationEvent {
  constructor(public n: number) {
    super();
  }
}

for (const kind of testDialects()) {
  describe(`processors: cleanup (${kind})`, () => {
    let db: TestDb;
    let h: Harness;

    beforeEach(async () => {
      db = await createTestDb(kind);
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    it('deletes Published rows older than publishedExpireTime in batches of deleteBatchCount, and nothing else', async () => {
      h = await makeOutbox(db.sequelize, { publishedExpireTime: 100, deleteBatchCount: 7 });
      const { outbox, clock } = h;
      const t0 = clock.now();
      const done = { state: 2, nextAttemptTime: null, lockOwner: null, lockedUntil: null };
      await seedRows(outbox, 30, { ...done, modificationTime: t0 - 200_000 }, t0);
      await seedRows(outbox, 5, { ...done, modificationTime: t0 - 50_000 }, t0);
      await seedRows(outbox, 3, { state: 3, nextAttemptTime: null, lockOwner: null, lockedUntil: null, modificationTime: t0 - 10_000_000 }, t0);
      await seedRows(outbox, 2, { state: 3, nextAttemptTime: t0 + 60_000, lockOwner: null, lockedUntil: null, modificationTime: t0 - 10_000_000 }, t0);
      await seedRows(outbox, 2, { state: 0, nextAttemptTime: t0 + 60_000, modificationTime: t0 - 10_000_000 }, t0);

      const batches: number[] = [];
      const deletePublished = h.store.deletePublished.bind(h.store);
      h.store.deletePublished = async (before, limit) => {
        const n = await deletePublished(before, limit);
        batches.push(n);
        assert.equal(limit, 7);
        return n;
      };
      const cleaned: unknown[] = [];
      outbox.on('cleaned', (e) => cleaned.push(e));

      assert.equal(await outbox.runPass('delete-published-expired'), 30);
      assert.deepEqual(batches, [7, 7, 7, 7, 2]);
      assert.deepEqual(cleaned, [{ published: 30, inbox: 0, localQueue: 0 }]);
      assert.deepEqual(await outbox.stats(), { notPublished: 2, inProgress: 0, published: 5, publishedFailed: 2, terminalFailed: 3 });

      clock.advance(60);
      assert.equal(await outbox.runPass('delete-published-expired'), 5);
      assert.equal(await outbox.runPass('delete-published-expired'), 0);
      assert.equal(cleaned.length, 2, 'no event for a pass that deleted nothing');
      assert.deepEqual(await outbox.stats(), { notPublished: 2, inProgress: 0, published: 0, publishedFailed: 2, terminalFailed: 3 });
    });

    it('overview(): counts, the backlog, the age of its oldest row on the engine clock, and the inbox size', async () => {
      h = await makeOutbox(db.sequelize);
      const { outbox, clock } = h;
      const t0 = clock.now();
      assert.deepEqual(await outbox.overview(), {
        notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 0,
        backlog: 0, oldestPendingTime: null, oldestPendingAgeMs: null, inboxSize: 0,
      });
      const done = { state: 2, nextAttemptTime: null, lockOwner: null, lockedUntil: null };
      // Published and terminal rows are older than any live one: they must not count for the age.
      await seedRows(outbox, 3, done, t0 - 90_000);
      await seedRows(outbox, 1, { state: 3, nextAttemptTime: null, lockOwner: null, lockedUntil: null }, t0 - 100_000);
      await seedRows(outbox, 2, { state: 0, nextAttemptTime: t0 + 60_000 }, t0 - 5_000);
      await seedRows(outbox, 1, { state: 3, nextAttemptTime: t0 + 60_000, lockOwner: null, lockedUntil: null }, t0 - 7_000);
      const inbox = quoteIdent(dialectOf(db.sequelize), outbox.tables.inbox);
      await db.sequelize.query(`INSERT INTO ${inbox} (consumer, event_id, handled_time) VALUES ('c', 'a', 1), ('c', 'b', 1), ('d', 'a', 1)`);
      clock.advance(1);
      assert.deepEqual(await outbox.overview(), {
        notPublished: 2, inProgress: 0, published: 3, publishedFailed: 1, terminalFailed: 1,
        backlog: 3, oldestPendingTime: t0 - 7_000, oldestPendingAgeMs: clock.now() - (t0 - 7_000), inboxSize: 3,
      });
    });

    it('a failing delete is reported with its context; the next pass finishes the job', async () => {
      h = await makeOutbox(db.sequelize, { publishedExpireTime: 1, deleteBatchCount: 4 });
      const { outbox, clock } = h;
      await seedRows(outbox, 10, { state: 2, nextAttemptTime: null, lockOwner: null, lockedUntil: null, modificationTime: clock.now() - 5_000 }, clock.now());
      const deletePublished = h.store.deletePublished.bind(h.store);
      let calls = 0;
      h.store.deletePublished = async (before, limit) => {
        if (++calls === 2) throw new Error('lock wait timeout exceeded');
        return deletePublished(before, limit);
      };
      const cleaned: number[] = [];
      outbox.on('cleaned', (e) => cleaned.push(e.published));
      assert.equal(await outbox.runPass('delete-published-expired'), 0);
      assert.deepEqual(cleaned, [4], 'what was deleted before the failure is still reported');
      assert.equal(h.errors.length, 1);
      const err = h.errors[0] as Error & { processor?: string; context?: Record<string, unknown> };
      assert.equal(err.processor, 'delete-published-expired');
      assert.match(err.message, /lock wait timeout/);
      assert.equal(err.context?.batchSize, 4);
      assert.equal(err.context?.deletedSoFar, 4);
      const [line] = h.logger.at('error');
      assert.equal(line!.context?.processor, 'delete-published-expired');
      assert.equal(await outbox.runPass('delete-published-expired'), 6);
      assert.equal((await outbox.stats()).published, 0);
    });

    it('deletes inbox entries older than inboxExpireTime, in batches', async () => {
      h = await makeOutbox(db.sequelize, { inboxExpireTime: 100, deleteBatchCount: 10 });
      const { outbox, clock } = h;
      const t0 = clock.now();
      const table = quoteIdent(dialectOf(db.sequelize), outbox.tables.inbox);
      const values = [
        ...Array.from({ length: 25 }, (_, i) => `('billing', 'old-${i}', ${t0 - 200_000 + i})`),
        ...Array.from({ length: 5 }, (_, i) => `('billing', 'new-${i}', ${t0 - 10_000})`),
      ];
      await db.sequelize.query(`INSERT INTO ${table} (consumer, event_id, handled_time) VALUES ${values.join(', ')}`);
      const batches: number[] = [];
      const inbox = outbox.inbox!;
      const deleteOlderThan = inbox.deleteOlderThan.bind(inbox);
      inbox.deleteOlderThan = async (before, limit) => {
        assert.equal(before, t0 - 100_000);
        const n = await deleteOlderThan(before, limit);
        batches.push(n);
        return n;
      };
      const cleaned: unknown[] = [];
      outbox.on('cleaned', (e) => cleaned.push(e));
      assert.equal(await outbox.runPass('clean-inbox'), 25);
      assert.deepEqual(batches, [10, 10, 5]);
      assert.deepEqual(cleaned, [{ published: 0, inbox: 25, localQueue: 0 }]);
      const [rows] = await db.sequelize.query(`SELECT event_id FROM ${table} ORDER BY event_id`);
      assert.deepEqual((rows as Array<{ event_id: string }>).map((r) => r.event_id), ['new-0', 'new-1', 'new-2', 'new-3', 'new-4']);
    });

    it('drops local-queue items whose lease ran out; their rows stay for the database retry', async () => {
      h = await makeOutbox(db.sequelize, { leaseTime: 30 });
      const { outbox, publisher, clock } = h;
      publisher.down = true;
      await outbox.runInUnitOfWork(() => outbox.bus.publishAll([new Shipped(1), new Shipped(2), new Shipped(3)]));
      await outbox.drain();
      assert.equal(h.failed.length, 3, 'the three failed publishes wait in the local queue');
      const cleaned: unknown[] = [];
      outbox.on('cleaned', (e) => cleaned.push(e));

      assert.equal(await outbox.runPass('delete-local-queue-expired'), 0);
      clock.advance(31);
      assert.equal(await outbox.runPass('delete-local-queue-expired'), 3);
      assert.deepEqual(cleaned, [{ published: 0, inbox: 0, localQueue: 3 }]);

      publisher.down = false;
      assert.equal(await outbox.runPass('retry-by-local-queue'), 0, 'nothing is left to retry from memory');
      assert.equal(publisher.messages.length, 0);
      assert.equal(await outbox.runPass('retry-by-database'), 3);
      assert.equal(publisher.messages.length, 3);
    });
  });
}
