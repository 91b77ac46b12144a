import assert from 'node:assert/strict';
import { getTasks } from 'node-cron';
import { IntegrationEvent } from '../../src';
import { EventState, SequelizeOutboxStore } from '../../src/extend';
import { cronExpressionFor } from '../../src/core/processors';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { countClaims, failClaims, GatedPublisher, makeOutbox, seedRows, until, type Harness } from './helpers';

class Packed extends IntegrationEvent {
  constructor(public n: number) {
    super();
  }
}

const ourCronTasks = () => [...getTasks().values()].filter((t) => t.name?.startsWith('dapr-outbox:'));
const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const ticks = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('processors: interval to node-cron', () => {
  it('maps whole-second periods that divide their field to cron, anything else to a timer', () => {
    const cases: Array<[number, string | null]> = [
      [1, '* * * * * *'],
      [3, '*/3 * * * * *'],
      [15, '*/15 * * * * *'],
      [30, '*/30 * * * * *'],
      [60, '0 * * * * *'],
      [120, '0 */2 * * * *'],
      [300, '0 */5 * * * *'],
      [1800, '0 */30 * * * *'],
      [3600, '0 0 * * * *'],
      [7200, '0 0 */2 * * *'],
      [43200, '0 0 */12 * * *'],
      [86400, '0 0 0 * * *'],
      [0.05, null],
      [1.5, null],
      [7, null],
      [45, null],
      [90, null],
      [420, null],
      [5400, null],
      [36000, null],
      [172800, null],
    ];
    for (const [seconds, expected] of cases) assert.equal(cronExpressionFor(seconds), expected, `${seconds} s`);
  });
});

for (const kind of testDialects()) {
  describe(`processors: lifecycle (${kind})`, () => {
    let db: TestDb;
    let h: Harness;

    beforeEach(async () => {
      db = await createTestDb(kind);
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    it('start() and stop() are idempotent and leave no cron task or timer behind', async () => {
      h = await makeOutbox(db.sequelize, { localFailedRetryInterval: 7 });
      const { outbox } = h;
      const before = { cron: ourCronTasks().length, timers: timeouts() };
      outbox.start();
      outbox.start();
      assert.equal(outbox.running, true);
      const schedules = (outbox as unknown as { processors: { schedules: Array<{ name: string; cron: string | null }> } }).processors.schedules;
      assert.deepEqual(
        schedules.map((s) => [s.name, s.cron]),
        [
          ['retry-by-local-queue', null],
          ['retry-by-database', '0 * * * * *'],
          ['delete-published-expired', '0 */5 * * * *'],
          ['delete-local-queue-expired', '0 * * * * *'],
          ['clean-inbox', '0 */5 * * * *'],
        ],
      );
      assert.equal(ourCronTasks().length, before.cron + 4);
      await Promise.all([outbox.stop(), outbox.stop()]);
      await outbox.stop();
      assert.equal(outbox.running, false);
      assert.equal(ourCronTasks().length, before.cron);
      assert.equal(timeouts(), before.timers);

      outbox.start();
      assert.equal(outbox.running, true);
      assert.equal(ourCronTasks().length, before.cron + 4);
      await outbox.stop();
      assert.equal(ourCronTasks().length, before.cron);
    });

    it('scheduled on node-cron (every second): due rows get published', async () => {
      h = await makeOutbox(db.sequelize, { failedRetryInterval: 1, clock: { now: () => Date.now() } });
      await seedRows(h.outbox, 5, { nextAttemptTime: Date.now() - 1000 });
      h.outbox.start();
      await until(async () => (await h.outbox.stats()).published === 5, 50);
      await h.outbox.stop();
      assert.equal(h.publisher.messages.length, 5);
    });

    it('scheduled on a timer (0.05 s): due rows get published', async () => {
      h = await makeOutbox(db.sequelize, { failedRetryInterval: 0.05, clock: { now: () => Date.now() } });
      await seedRows(h.outbox, 5, { nextAttemptTime: Date.now() - 1000 });
      h.outbox.start();
      await until(async () => (await h.outbox.stats()).published === 5, 20);
      await h.outbox.stop();
      assert.equal(h.publisher.messages.length, 5);
    });

    it('a pass never overlaps itself: ticks and calls during a pass join it', async () => {
      const publisher = new GatedPublisher();
      h = await makeOutbox(db.sequelize, { publisher, failedRetryInterval: 0.01 });
      const { outbox, logger } = h;
      await seedRows(outbox, 3, {}, h.clock.now());
      const claims = countClaims(h);
      publisher.hold();
      const first = outbox.runPass('retry-by-database');
      await until(() => publisher.waiting > 0);
      const second = outbox.runPass('retry-by-database');
      outbox.start();
      const skipped = () => logger.at('debug').filter((l) => l.message.includes('tick skipped') && l.context?.processor === 'retry-by-database').length;
      await until(() => skipped() >= 3);
      assert.deepEqual(claims, [3], 'one batch, held at the publisher');
      publisher.release();
      assert.deepEqual(await Promise.all([first, second]), [3, 3]);
      await outbox.stop();
      assert.equal(publisher.messages.length, 3);
    });

    it('stop() waits for the running pass, which ends after its current batch', async () => {
      const publisher = new GatedPublisher();
      h = await makeOutbox(db.sequelize, { publisher, retryBatchSize: 2 });
      const { outbox } = h;
      await seedRows(outbox, 10, {}, h.clock.now());
      publisher.hold();
      const pass = outbox.runPass('retry-by-database');
      await until(() => publisher.waiting > 0);
      let stopped = false;
      const stopping = outbox.stop().then(() => (stopped = true));
      for (let i = 0; i < 20; i++) await ticks();
      assert.equal(stopped, false, 'stop() is waiting for the pass');
      publisher.release();
      await stopping;
      assert.equal(await pass, 2, 'the pass stopped after the batch it held');
      assert.deepEqual(await outbox.stats(), { notPublished: 8, inProgress: 0, published: 2, publishedFailed: 0, terminalFailed: 0 });
    });

    it('stop() gives back the rows this process holds, so another replica takes them at once', async () => {
      h = await makeOutbox(db.sequelize, { leaseTime: 3600 });
      const { outbox, publisher, clock } = h;
      publisher.down = true;
      await outbox.runInUnitOfWork(() => outbox.bus.publishAll([new Packed(1), new Packed(2)]));
      await outbox.drain();
      assert.equal(h.failed.length, 2, 'both wait in the local queue');
      outbox.start();
      await outbox.stop();
      const other = new SequelizeOutboxStore(db.another(), outbox.tables.outbox);
      const taken = await other.claimDue(10, clock.now(), 'other-replica', clock.now() + 30_000);
      assert.equal(taken.length, 2, 'due at once, not after the hour-long lease');
    });

    it('a scheduled pass that keeps failing is reported each time and the schedule goes on', async () => {
      h = await makeOutbox(db.sequelize, { failedRetryInterval: 0.02, clock: { now: () => Date.now() } });
      const { outbox } = h;
      await seedRows(outbox, 4, { nextAttemptTime: Date.now() - 1000 });
      failClaims(h, 3, (n) => new Error(`database restarting (${n})`));
      outbox.start();
      await until(async () => (await outbox.stats()).published === 4);
      await outbox.stop();
      assert.equal(h.errors.length, 3);
      assert.ok(h.errors.every((e) => (e as { processor?: string }).processor === 'retry-by-database'));
      assert.equal(h.logger.at('error').length, 3);
    });

    it('an event listener that throws does not break a pass', async () => {
      h = await makeOutbox(db.sequelize);
      await seedRows(h.outbox, 2, {}, h.clock.now());
      h.outbox.on('published', () => {
        throw new Error('listener bug');
      });
      assert.equal(await h.outbox.runPass('retry-by-database'), 2);
      const rows = await h.store.find(h.publisher.ids());
      assert.ok(rows.length === 2 && rows.every((r) => r.state === EventState.Published));
      assert.ok(h.logger.at('error').some((l) => l.message.includes('listener threw')));
    });
  });
}
