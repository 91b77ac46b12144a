import assert from 'node:assert/strict';
import { EventState } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { countClaims, GatedPublisher, makeOutbox, seedRows, until, type Harness } from './helpers';

/**
 * The database retry pass as a pipeline: the next batch is claimed while the current one is
 * published, and a batch claimed ahead that is never published is given back with its attempt
 * uncounted.
 */
// With leases (the default, and the only way on SQLite), and under row locks where the database has SKIP LOCKED.
const modes = (kind: string) => (kind === 'sqlite' ? [false] : [false, true]);

for (const kind of testDialects()) for (const relayUnderRowLocks of modes(kind)) {
  describe(`processors: the relay pipeline (${kind}, ${relayUnderRowLocks ? 'row locks' : 'leases'})`, () => {
    let db: TestDb;
    let h: Harness;

    beforeEach(async () => {
      db = await createTestDb(kind);
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    it('claims the next batch while the current one is being published, and publishes every row once', async () => {
      const publisher = new GatedPublisher();
      h = await makeOutbox(db.sequelize, { publisher, retryBatchSize: 10, relayUnderRowLocks });
      const t0 = h.clock.now();
      const ids = await seedRows(h.outbox, 25, {}, t0);
      const claims = countClaims(h);

      publisher.hold();
      const pass = h.outbox.runPass('retry-by-database');
      await until(async () => publisher.waiting > 0);
      // The first batch is at the publisher and has not come back: the second is claimed meanwhile.
      await until(async () => claims.length === 2);
      assert.deepEqual(claims, [10, 10]);
      assert.equal(publisher.messages.length, 0);
      publisher.release();

      assert.equal(await pass, 25);
      assert.deepEqual(claims, [10, 10, 5], 'every row once');
      assert.deepEqual([...publisher.ids()].sort(), [...ids].sort());
      const rows = await h.store.find(ids);
      assert.ok(rows.every((r) => r.state === EventState.Published && r.timesSent === 2), 'seeded as sent once, published on the second attempt');
    });

    it('a batch claimed ahead while the broker turned out to be down is given back due, with no attempt counted', async () => {
      h = await makeOutbox(db.sequelize, { retryBatchSize: 10, relayUnderRowLocks });
      const t0 = h.clock.now();
      const ids = await seedRows(h.outbox, 30, (i) => ({ nextAttemptTime: t0 - 1000 + i }), t0);
      h.publisher.down = true;

      // The first batch fails for a transient reason: the pass stops, and the batch it claimed
      // ahead was never handed to the publisher.
      assert.equal(await h.outbox.runPass('retry-by-database'), 10);
      const rows = new Map((await h.store.find(ids)).map((r) => [r.id, r]));
      const attempted = ids.slice(0, 10).map((id) => rows.get(id)!);
      const ahead = ids.slice(10, 20).map((id) => rows.get(id)!);
      const untouched = ids.slice(20).map((id) => rows.get(id)!);
      assert.ok(attempted.every((r) => r.state === EventState.PublishedFailed && r.timesSent === 2 && r.nextAttemptTime! > t0));
      for (const r of ahead) {
        assert.equal(r.timesSent, 1, 'the claim ahead counted no attempt');
        assert.equal(r.state, EventState.NotPublished, 'and left the state as it was');
        assert.notEqual(r.lockOwner, h.outbox.owner, 'and holds no lease of this process');
        assert.ok(r.nextAttemptTime! <= h.clock.now(), 'and is due at once');
      }
      assert.ok(untouched.every((r) => r.timesSent === 1 && r.state === EventState.NotPublished));
      assert.equal(h.failed.length, 10, 'only the attempted rows were reported failed');

      h.publisher.down = false;
      assert.equal(await h.outbox.runPass('retry-by-database'), 20);
      const after = await h.store.find(ids.slice(10));
      assert.ok(after.every((r) => r.state === EventState.Published && r.timesSent === 2));
    });

    it('stopping during a pass gives back the batch claimed ahead, uncounted, and publishes nothing more', async () => {
      const publisher = new GatedPublisher();
      h = await makeOutbox(db.sequelize, { publisher, retryBatchSize: 10, relayUnderRowLocks });
      const t0 = h.clock.now();
      const ids = await seedRows(h.outbox, 30, (i) => ({ nextAttemptTime: t0 - 1000 + i }), t0);
      const claims = countClaims(h);

      publisher.hold();
      const pass = h.outbox.runPass('retry-by-database');
      await until(async () => publisher.waiting > 0 && claims.length === 2);
      const stopped = h.outbox.stop();
      publisher.release();
      assert.equal(await pass, 10);
      await stopped;

      assert.equal(publisher.messages.length, 10);
      const rows = new Map((await h.store.find(ids)).map((r) => [r.id, r]));
      assert.ok(ids.slice(0, 10).every((id) => rows.get(id)!.state === EventState.Published));
      for (const id of ids.slice(10, 20)) {
        const r = rows.get(id)!;
        assert.equal(r.timesSent, 1, `${id}: no attempt counted`);
        assert.notEqual(r.lockOwner, h.outbox.owner, 'given back');
        assert.equal(r.state, EventState.NotPublished);
      }
      assert.ok(ids.slice(20).every((id) => rows.get(id)!.timesSent === 1 && rows.get(id)!.state === EventState.NotPublished), 'never claimed');
    });

    if (!relayUnderRowLocks) it('an undone claim of a row that already failed puts it back as PublishedFailed, its count as it was', async () => {
      h = await makeOutbox(db.sequelize);
      const [id] = await seedRows(h.outbox, 1, {}, h.clock.now());
      h.publisher.down = true;
      await h.outbox.runPass('retry-by-database');
      let [row] = await h.store.find([id!]);
      assert.equal(row!.state, EventState.PublishedFailed);
      assert.equal(row!.timesSent, 2);
      h.clock.t = row!.nextAttemptTime!;
      const [claimed] = await h.store.claimDue(10, h.clock.now(), 'replica-a', h.clock.now() + 30_000);
      assert.equal(claimed!.timesSent, 3);
      await h.store.release([id!], 'replica-a', h.clock.now(), { undoAttempt: true });
      [row] = await h.store.find([id!]);
      assert.equal(row!.state, EventState.PublishedFailed);
      assert.equal(row!.timesSent, 2);
      assert.equal(row!.lockOwner, null);
      assert.match(row!.lastError ?? '', /broker down/, 'the error stays for the dashboard and the next attempt');
    });
  });
}
