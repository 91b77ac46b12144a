import assert from 'node:assert/strict';
import { IntegrationEvent } from '../../src';
import { EventState, retryDelayMs, SequelizeOutboxStore } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { CapturingLogger, countClaims, drain, failClaims, makeOutbox, relaysUnderLocks, seedRows, TestClock, type Harness } from './helpers';

class OrderPlaced extends IntegrationEvent {
  constructor(public orderId: number) {
    super();
  }
}

for (const kind of testDialects()) {
  describe(`processors: retry by database (${kind})`, () => {
    let db: TestDb;
    let h: Harness;

    beforeEach(async () => {
      db = await createTestDb(kind);
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    it('backs off exponentially with jitter between the floor and the ceiling, then fails for good', async () => {
      h = await makeOutbox(db.sequelize, { minimumRetryInterval: 10, maximumRetryInterval: 40, maxRetryTimes: 3 });
      const { outbox, publisher, clock } = h;
      const t0 = clock.now();
      const [id] = await seedRows(outbox, 1, {}, t0);
      const scheduled: Array<{ attempt: number; nextAttemptTime: number }> = [];
      const failed: number[] = [];
      const terminal: number[] = [];
      outbox.on('retryScheduled', (e) => scheduled.push({ attempt: e.attempt, nextAttemptTime: e.nextAttemptTime }));
      outbox.on('failed', (e) => failed.push(e.attempt));
      outbox.on('terminalFailure', (e) => terminal.push(e.attempt));
      publisher.down = true;

      // Seeded as sent once (the dead committer's attempt): this claim is attempt 2.
      assert.equal(await outbox.runPass('retry-by-database'), 1);
      let [row] = await h.store.find([id!]);
      assert.equal(row!.state, EventState.PublishedFailed);
      assert.equal(row!.timesSent, 2);
      // attempt 2: min(40, 10 * 2) = 20 s, equal jitter at random 0.5 -> 10 + 5 = 15 s.
      assert.equal(row!.nextAttemptTime, t0 + 15_000);
      assert.match(row!.lastError ?? '', /broker down/);
      assert.equal(row!.lockOwner, null);

      clock.t = t0 + 14_999;
      assert.equal(await outbox.runPass('retry-by-database'), 0, 'not due before its backoff');
      clock.t = t0 + 15_000;
      assert.equal(await outbox.runPass('retry-by-database'), 1);
      [row] = await h.store.find([id!]);
      // attempt 3: min(40, 10 * 4) = 40 s (the ceiling), jittered to 30 s.
      assert.equal(row!.nextAttemptTime, clock.t + 30_000);

      clock.advance(30);
      assert.equal(await outbox.runPass('retry-by-database'), 1);
      [row] = await h.store.find([id!]);
      assert.equal(row!.state, EventState.PublishedFailed);
      assert.equal(row!.nextAttemptTime, null, 'attempt 4 > maxRetryTimes 3: terminal');
      assert.deepEqual(failed, [2, 3, 4]);
      assert.deepEqual(scheduled.map((s) => s.attempt), [2, 3]);
      assert.deepEqual(terminal, [4]);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 1 });

      // A terminal row is never retried and never cleaned up, however old.
      clock.advance(365 * 86400);
      assert.equal(await outbox.runPass('retry-by-database'), 0);
      assert.equal(await outbox.runPass('delete-published-expired'), 0);
      assert.equal((await outbox.stats()).terminalFailed, 1);
      assert.equal(publisher.messages.length, 0);
    });

    it('keeps every backoff between minimumRetryInterval and maximumRetryInterval', () => {
      const tuning = { minimumRetryInterval: 5, maximumRetryInterval: 300 };
      for (let attempt = 1; attempt <= 40; attempt++) {
        for (const r of [0, 0.25, 0.5, 0.999999, 1]) {
          const ms = retryDelayMs(attempt, tuning, () => r);
          assert.ok(ms >= 5000 && ms <= 300_000, `attempt ${attempt}, random ${r}: ${ms} ms`);
        }
      }
      assert.equal(retryDelayMs(30, tuning, () => 1), 300_000);
    });

    it('republishes terminal failures by id and by filter', async () => {
      h = await makeOutbox(db.sequelize, { maxRetryTimes: 0 });
      const { outbox, publisher, clock } = h;
      const a = await seedRows(outbox, 2, { topic: 'A' }, clock.now());
      const b = await seedRows(outbox, 3, { topic: 'B' }, clock.now());
      publisher.down = true;
      assert.equal(await outbox.runPass('retry-by-database'), 5);
      assert.equal((await outbox.stats()).terminalFailed, 5);

      publisher.down = false;
      assert.equal(await outbox.republish([a[0]!]), 1);
      assert.equal(await outbox.republish([a[0]!]), 0, 'only terminal rows are republished');
      assert.equal(await outbox.republish({ topic: 'B' }), 3);
      const published: string[] = [];
      outbox.on('published', (e) => {
        assert.equal(e.source, 'retry');
        published.push(...e.ids);
      });
      assert.equal(await outbox.runPass('retry-by-database'), 4);
      assert.deepEqual(published.sort(), [a[0]!, ...b].sort());
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 4, publishedFailed: 0, terminalFailed: 1 });
      const [again] = await h.store.find([a[0]!]);
      assert.equal(again!.timesSent, 1, 'a republished row starts counting again');
    });

    it('sidecar down: committed events fail, back off, and are all published once it is back', async () => {
      h = await makeOutbox(db.sequelize, { minimumRetryInterval: 60, localRetryTimes: 2 });
      const { outbox, publisher, clock } = h;
      publisher.down = true;
      for (let i = 0; i < 20; i++) await outbox.runInUnitOfWork(() => outbox.bus.publish(new OrderPlaced(i)));
      await outbox.drain();
      assert.equal(h.failed.length, 20, 'all twenty wait in the local queue');

      // The local queue gives up after localRetryTimes and hands the rows to the database retry.
      await outbox.runPass('retry-by-local-queue');
      assert.equal(await outbox.runPass('retry-by-local-queue'), 20);
      assert.equal((await outbox.stats()).publishedFailed, 20);
      assert.equal(await outbox.runPass('retry-by-database'), 0, 'backing off');

      clock.advance(120); // the first retry is jittered within [minimumRetryInterval, 2 x minimumRetryInterval]
      assert.equal(await outbox.runPass('retry-by-database'), 20);
      assert.equal((await outbox.stats()).publishedFailed, 20, 'still down');

      publisher.down = false;
      clock.advance(3600);
      assert.equal(await drain(() => outbox.runPass('retry-by-database')), 20);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 20, publishedFailed: 0, terminalFailed: 0 });
      assert.equal(publisher.messages.length, 20);
      assert.equal(new Set(publisher.ids()).size, 20);
    });

    it('takes the rows of a claimer that died once its lease runs out', async () => {
      h = await makeOutbox(db.sequelize, { leaseTime: 30 });
      const { outbox, publisher, clock } = h;
      const t0 = clock.now();
      const ids = await seedRows(outbox, 30, {}, t0);
      const other = new SequelizeOutboxStore(db.another(), outbox.tables.outbox);
      const taken = await other.claimDue(100, t0, 'replica-that-dies', t0 + 30_000);
      assert.equal(taken.length, 30);

      assert.equal(await outbox.runPass('retry-by-database'), 0, 'held by the other replica');
      clock.t = t0 + 29_999;
      assert.equal(await outbox.runPass('retry-by-database'), 0);
      clock.t = t0 + 30_000;
      assert.equal(await outbox.runPass('retry-by-database'), 30);
      assert.deepEqual(publisher.ids().sort(), [...ids].sort());
      const rows = await h.store.find(ids);
      assert.ok(rows.every((r) => r.state === EventState.Published && r.timesSent === 3 && r.lockOwner === null));

      // The dead replica waking up cannot undo it: its marks need its lock.
      await other.markFailed([{ id: ids[0]!, error: 'late', nextAttemptTime: clock.now() }], 'replica-that-dies', clock.now());
      assert.equal((await h.store.find([ids[0]!]))[0]!.state, EventState.Published);
    });

    it('relays in bulk grouped by topic, and a partial failure fails only its own entries', async () => {
      h = await makeOutbox(db.sequelize, { batchSize: 100 });
      const { outbox, publisher, clock } = h;
      const a = await seedRows(outbox, 10, { topic: 'A' }, clock.now());
      const b = await seedRows(outbox, 5, { topic: 'B' }, clock.now());
      const published: string[] = [];
      const failed: string[] = [];
      outbox.on('published', (e) => published.push(...e.ids));
      outbox.on('failed', (e) => failed.push(e.id));
      publisher.failNext(3);
      assert.equal(await outbox.runPass('retry-by-database'), 15);
      assert.deepEqual([...publisher.bulkCalls].sort((x, y) => x - y), [5, 10]);
      assert.equal(failed.length, 3);
      assert.equal(published.length, 12);
      const rows = await h.store.find([...a, ...b]);
      const byState = (s: number) => rows.filter((r) => r.state === s).map((r) => r.id).sort();
      assert.deepEqual(byState(EventState.PublishedFailed), [...failed].sort());
      assert.deepEqual(byState(EventState.Published), [...published].sort());
      assert.ok(rows.filter((r) => r.state === EventState.PublishedFailed).every((r) => r.nextAttemptTime! > clock.now()));
    });

    it('publishes one by one with bulk off', async () => {
      h = await makeOutbox(db.sequelize, { bulk: false });
      await seedRows(h.outbox, 4, {}, h.clock.now());
      assert.equal(await h.outbox.runPass('retry-by-database'), 4);
      assert.equal(h.publisher.bulkCalls.length, 0);
      assert.equal(h.publisher.messages.length, 4);
    });

    it('drains a backlog larger than retryBatchSize in one pass, batch after batch', async () => {
      h = await makeOutbox(db.sequelize, { retryBatchSize: 7 });
      await seedRows(h.outbox, 50, {}, h.clock.now());
      const claims = countClaims(h);
      assert.equal(await h.outbox.runPass('retry-by-database'), 50);
      // (Under row locks two lanes take batches side by side: the short one may not come last.)
      assert.deepEqual([...claims].sort((a, b) => b - a), [7, 7, 7, 7, 7, 7, 7, 1]);
      assert.equal((await h.outbox.stats()).published, 50);
    });

    it('stops a pass after a batch that failed entirely for a transient reason', async () => {
      h = await makeOutbox(db.sequelize, { retryBatchSize: 5 });
      await seedRows(h.outbox, 20, {}, h.clock.now());
      h.publisher.down = true;
      assert.equal(await h.outbox.runPass('retry-by-database'), 5, 'the broker is down: one batch, then wait for the next tick');
      assert.equal((await h.outbox.stats()).notPublished, 15);
    });

    it('fails a row whose content is not JSON at once, without stalling the rows behind it', async () => {
      h = await makeOutbox(db.sequelize, { retryBatchSize: 2 });
      const { outbox, publisher, clock } = h;
      const now = clock.now();
      const [poison] = await seedRows(outbox, 1, { content: '{"truncated": ', nextAttemptTime: now - 10_000 }, now);
      const good = await seedRows(outbox, 5, { nextAttemptTime: now - 5_000 }, now);
      const terminal: string[] = [];
      outbox.on('terminalFailure', (e) => terminal.push(e.id));
      assert.equal(await outbox.runPass('retry-by-database'), 6);
      assert.deepEqual(terminal, [poison]);
      assert.deepEqual(publisher.ids().sort(), [...good].sort());
      const [row] = await h.store.find([poison!]);
      assert.equal(row!.nextAttemptTime, null);
      assert.match(row!.lastError ?? '', /not valid JSON/);
    });

    it('takes over a local-queue item whose lease ran out, so the two retries never race', async () => {
      h = await makeOutbox(db.sequelize, { leaseTime: 30 });
      const { outbox, publisher, clock } = h;
      publisher.down = true;
      await outbox.runInUnitOfWork(() => outbox.bus.publish(new OrderPlaced(1)));
      await outbox.drain();
      assert.equal(h.failed.length, 1, 'the failed publish waits in the local queue');
      publisher.down = false;
      clock.advance(31);
      assert.equal(await outbox.runPass('retry-by-database'), 1);
      assert.equal(await outbox.runPass('retry-by-local-queue'), 0, 'the database retry took it over');
      assert.equal(publisher.messages.length, 1);
    });

    it('a throwing claim is logged with its context, emitted as error, and the next pass goes on', async () => {
      const logger = new CapturingLogger();
      h = await makeOutbox(db.sequelize, { logger, retryBatchSize: 25, clock: new TestClock() });
      await seedRows(h.outbox, 3, {}, h.clock.now());
      failClaims(h, 1, () => new Error('connection lost'));
      assert.equal(await h.outbox.runPass('retry-by-database'), 0);
      assert.equal(h.errors.length, 1);
      const err = h.errors[0] as Error & { processor?: string; cause?: unknown };
      assert.equal(err.name, 'ProcessorError');
      assert.equal(err.processor, 'retry-by-database');
      assert.match(err.message, /connection lost/);
      assert.equal((err.cause as Error).message, 'connection lost');
      const [line] = logger.at('error');
      assert.equal(line!.context?.processor, 'retry-by-database');
      assert.equal(line!.context?.batchSize, 25);
      assert.equal(await h.outbox.runPass('retry-by-database'), 3);
    });

    // With leases the mark is a statement of its own, after the publish (under row locks it is in
    // the batch's transaction: the next test).
    it('with leases, a failed Published mark is reported, and the next pass (or stop) marks the rows', async () => {
      h = await makeOutbox(db.sequelize, { relayUnderRowLocks: false });
      const first = await seedRows(h.outbox, 4, {}, h.clock.now());
      const markPublished = h.store.markPublished.bind(h.store);
      let fail = true;
      h.store.markPublished = async (...args) => {
        if (fail) throw new Error('deadlock found');
        return markPublished(...args);
      };
      assert.equal(await h.outbox.runPass('retry-by-database'), 4);
      assert.equal(h.errors.length, 1);
      assert.match(h.errors[0]!.message, /could not mark published rows.*deadlock found/);
      assert.equal((await h.outbox.stats()).inProgress, 4);
      fail = false;
      assert.equal(await h.outbox.runPass('retry-by-database'), 0, 'nothing due: the rows are still leased');
      assert.ok((await h.store.find(first)).every((r) => r.state === EventState.Published), 'marked by the next pass');

      const second = await seedRows(h.outbox, 3, {}, h.clock.now());
      fail = true;
      assert.equal(await h.outbox.runPass('retry-by-database'), 3);
      fail = false;
      await h.outbox.stop();
      assert.ok((await h.store.find(second)).every((r) => r.state === EventState.Published), 'marked by stop()');
      assert.equal(h.publisher.messages.length, 7, 'published once each');
    });
    // SQLite has no SKIP LOCKED: its relay keeps to leases whatever the option says.
    if (kind !== 'sqlite') it('relayUnderRowLocks: a failed outcome write rolls the batch back: reported, due again, published and marked by the next pass', async () => {
      h = await makeOutbox(db.sequelize, { relayUnderRowLocks: true });
      assert.equal(await relaysUnderLocks(h), true);
      const ids = await seedRows(h.outbox, 4, {}, h.clock.now());
      const relayLocked = h.store.relayLocked.bind(h.store);
      let fail = true;
      h.store.relayLocked = (limit, now, send, options) =>
        relayLocked(
          limit,
          now,
          async (rows) => {
            const outcome = await send(rows);
            if (fail) throw new Error('deadlock found');
            return outcome;
          },
          options,
        );
      const published: string[] = [];
      h.outbox.on('published', (e) => published.push(...e.ids));
      assert.equal(await h.outbox.runPass('retry-by-database'), 0, 'the pass failed');
      assert.equal(h.publisher.messages.length, 4, 'after publishing its batch');
      assert.equal(h.errors.length, 1);
      assert.match(h.errors[0]!.message, /could not record the outcome of a published batch.*deadlock found/);
      assert.deepEqual(published, [], 'no published event for a batch whose marks rolled back');
      const rows = await h.store.find(ids);
      assert.ok(rows.every((r) => r.state === EventState.NotPublished && r.timesSent === 1 && r.nextAttemptTime! <= h.clock.now()), 'as before the pass: due, uncounted');
      fail = false;
      assert.equal(await h.outbox.runPass('retry-by-database'), 4);
      assert.ok((await h.store.find(ids)).every((r) => r.state === EventState.Published && r.timesSent === 2));
      assert.equal(h.publisher.messages.length, 8, 'published twice each: at least once, the inbox drops the repeat');
      assert.deepEqual(published.sort(), [...ids].sort());
    });

  });
}
