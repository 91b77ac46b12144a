import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { QueryTypes, Transaction, type Model, type ModelStatic } from 'sequelize';
import { createOutbox, createSubscriptionRouter, type Outbox, type TopicHandler, type TopicOptions } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { UserRegistered } from '../support/app';
import { RecordingPublisher } from '../support/recording-publisher';
import { appWith, bulkBody, cloudEvent, daprEnvelope, defineEffect, deliveryHeaders, listen, recordingLogger } from './helpers';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const kind of testDialects()) {
  describe(`subscription router: inbox, exactly-once effects (${kind})`, () => {
    const route = '/dapr-outbox/pubsub/orders';
    let db: TestDb;
    let outbox: Outbox;
    let publisher: RecordingPublisher;
    let Effect: ModelStatic<Model>;
    let logger: ReturnType<typeof recordingLogger>;
    const closers: Array<() => Promise<void>> = [];

    before(async () => {
      db = await createTestDb(kind);
      publisher = new RecordingPublisher();
      outbox = createOutbox({ sequelize: db.sequelize, publisher, logger: silentLogger });
      await outbox.migrate();
      Effect = defineEffect(db.sequelize);
      await Effect.sync();
    });
    after(async () => {
      await outbox.close();
      await db.close();
    });
    beforeEach(async () => {
      logger = recordingLogger();
      await Effect.destroy({ where: {} });
      await db.sequelize.query(`DELETE FROM ${outbox.tables.inbox}`);
    });
    afterEach(async () => {
      while (closers.length) await closers.pop()!();
    });

    function appFor(handler: TopicHandler, options?: TopicOptions, routerOptions: { consumer?: string } = {}) {
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger, ...routerOptions });
      router.topic('pubsub', 'orders', handler, options);
      return appWith(router);
    }
    const effects = (eventId?: string) => Effect.count(eventId ? { where: { eventId } } : {});
    const inboxRows = async () =>
      (await db.sequelize.query(`SELECT consumer, event_id FROM ${outbox.tables.inbox} ORDER BY consumer`, { type: QueryTypes.SELECT })) as Array<{ consumer: string; event_id: string }>;

    it('answers SUCCESS to a redelivered event id without running the handler again', async () => {
      let runs = 0;
      const app = appFor(async (_d, ctx) => {
        runs++;
        await Effect.create({ eventId: ctx.id });
      });
      const body = daprEnvelope();
      for (let i = 0; i < 3; i++) {
        const res = await request(app).post(route).set(deliveryHeaders()).send(body);
        assert.deepEqual(res.body, { status: 'SUCCESS' });
      }
      assert.equal(runs, 1);
      assert.equal(await effects(), 1);
      assert.deepEqual(await inboxRows(), [{ consumer: 'pubsub/orders', event_id: JSON.parse(body).id }]);
      assert.ok(logger.entries.some((e) => e.level === 'debug' && /duplicate delivery/.test(e.message)));
    });

    it('rolls back the handler and the inbox record on failure, so the retry runs the handler again', async () => {
      let runs = 0;
      const app = appFor(async (_d, ctx) => {
        runs++;
        await Effect.create({ eventId: ctx.id, note: `run ${runs}` });
        if (runs === 1) throw new Error('first attempt fails after writing');
      });
      const body = daprEnvelope();
      const first = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(first.body, { status: 'RETRY' });
      assert.equal(await effects(), 0);
      assert.deepEqual(await inboxRows(), []);
      const retry = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(retry.body, { status: 'SUCCESS' });
      assert.equal(runs, 2);
      assert.deepEqual(
        (await Effect.findAll()).map((e) => e.get('note')),
        ['run 2'],
      );
      const again = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(again.body, { status: 'SUCCESS' });
      assert.equal(runs, 2);
    });

    it('gives exactly one effect when the same event id arrives 20 times at once', async () => {
      let runs = 0;
      const app = appFor(async (_d, ctx) => {
        runs++;
        await Effect.create({ eventId: ctx.id });
        await sleep(20); // hold the transaction open while the others arrive
      });
      const server = await listen(app);
      closers.push(server.close);
      const body = daprEnvelope();
      const answers = await Promise.all(Array.from({ length: 20 }, () => request(server.url).post(route).set(deliveryHeaders()).send(body)));
      for (const a of answers) {
        assert.equal(a.status, 200);
        assert.ok(a.body.status === 'SUCCESS' || a.body.status === 'RETRY', JSON.stringify(a.body));
      }
      assert.ok(answers.some((a) => a.body.status === 'SUCCESS'));
      assert.equal(runs, 1);
      assert.equal(await effects(), 1);
      assert.equal((await inboxRows()).length, 1);
    });

    it('gives at most one effect when the first of 20 concurrent duplicates fails, and exactly one after redelivery', async () => {
      let runs = 0;
      const app = appFor(async (_d, ctx) => {
        const run = ++runs;
        await Effect.create({ eventId: ctx.id });
        await sleep(10);
        if (run === 1) throw new Error('the first run fails');
      });
      const server = await listen(app);
      closers.push(server.close);
      const body = daprEnvelope();
      const answers = await Promise.all(Array.from({ length: 20 }, () => request(server.url).post(route).set(deliveryHeaders()).send(body)));
      const statuses = answers.map((a) => a.body.status as string);
      assert.ok(statuses.every((s) => s === 'SUCCESS' || s === 'RETRY'));
      assert.ok(statuses.includes('RETRY'));
      assert.ok((await effects()) <= 1);
      // daprd redelivers what was answered RETRY; whatever the interleaving, the end state is one effect.
      for (let i = 0; i < 5 && (await effects()) === 0; i++) await request(server.url).post(route).set(deliveryHeaders()).send(body);
      assert.equal(await effects(), 1);
      assert.deepEqual((await request(server.url).post(route).set(deliveryHeaders()).send(body)).body, { status: 'SUCCESS' });
      assert.equal(await effects(), 1);
    });

    it('keeps one inbox per consumer: the same id on two topics runs both handlers', async () => {
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger, consumer: 'billing' });
      router.topic('pubsub', 'orders', async (_d, ctx) => void (await Effect.create({ eventId: ctx.id, note: 'orders' })));
      router.topic('pubsub', 'refunds', async (_d, ctx) => void (await Effect.create({ eventId: ctx.id, note: 'refunds' })), { consumer: 'refund-handler' });
      const app = appWith(router);
      const id = randomUUID();
      for (let i = 0; i < 2; i++) {
        await request(app).post(route).set(deliveryHeaders()).send(daprEnvelope({ id }));
        await request(app)
          .post('/dapr-outbox/pubsub/refunds')
          .set(deliveryHeaders())
          .send(daprEnvelope({ id, topic: 'refunds' }));
      }
      assert.equal(await effects(id), 2);
      assert.deepEqual(await inboxRows(), [
        { consumer: 'billing/pubsub/orders', event_id: id },
        { consumer: 'refund-handler', event_id: id },
      ]);
    });

    it("runs the handler in the delivery's transaction: model calls join it without passing it", async () => {
      let tx: unknown;
      const app = appFor(async (_d, ctx) => {
        tx = ctx.transaction;
        await Effect.create({ eventId: ctx.id }); // no `transaction` option
        const [row] = (await db.sequelize.query('SELECT COUNT(*) AS n FROM router_effects', { type: QueryTypes.SELECT, transaction: ctx.transaction as Transaction })) as Array<{ n: number }>;
        assert.equal(Number(row!.n), 1);
        return 'RETRY';
      });
      const res = await request(app).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'RETRY' });
      assert.ok(tx instanceof Transaction);
      assert.equal(await effects(), 0, 'the model write joined the rolled-back transaction');
    });

    it("commits events the handler publishes with its transaction, and discards them when it fails", async () => {
      const app = appFor(async (data: { account: string; fail?: boolean }, ctx) => {
        await Effect.create({ eventId: ctx.id });
        await outbox.bus.publish(new UserRegistered(data.account, '1'));
        if (data.fail) throw new Error('after publishing');
      });
      const ok = await request(app)
        .post(route)
        .set(deliveryHeaders())
        .send(daprEnvelope({ data: { account: 'kept' } }));
      const failed = await request(app)
        .post(route)
        .set(deliveryHeaders())
        .send(daprEnvelope({ data: { account: 'discarded', fail: true } }));
      assert.deepEqual([ok.body.status, failed.body.status], ['SUCCESS', 'RETRY']);
      await outbox.drain();
      const accounts = publisher.messages.map((m) => JSON.parse(m.content).account);
      assert.ok(accounts.includes('kept'));
      assert.ok(!accounts.includes('discarded'));
      const stats = await outbox.stats();
      assert.equal(stats.notPublished + stats.inProgress + stats.published, 1);
    });

    it("works behind outbox.middleware(): the request's unit of work does not block the delivery's transaction", async () => {
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger });
      let runs = 0;
      router.topic('pubsub', 'orders', async (data: { fail?: boolean }, ctx) => {
        runs++;
        await Effect.create({ eventId: ctx.id });
        if (data.fail) throw new Error('fails');
      });
      const app = appWith(outbox.middleware(), router);
      const body = daprEnvelope();
      const first = await request(app).post(route).set(deliveryHeaders()).send(body);
      const duplicate = await request(app).post(route).set(deliveryHeaders()).send(body);
      const failing = await request(app)
        .post(route)
        .set(deliveryHeaders())
        .send(daprEnvelope({ data: { fail: true } }));
      assert.deepEqual([first.body, duplicate.body, failing.body], [{ status: 'SUCCESS' }, { status: 'SUCCESS' }, { status: 'RETRY' }]);
      assert.equal(runs, 2);
      assert.equal(await effects(), 1);
    });

    it('de-duplicates bulk entries through the same inbox', async () => {
      let runs = 0;
      const app = appFor(
        async (_d, ctx) => {
          runs++;
          await Effect.create({ eventId: ctx.id });
        },
        { bulk: true },
      );
      const a = cloudEvent({ data: { n: 1 } });
      const b = cloudEvent({ data: { n: 2 } });
      const first = await request(app)
        .post(route)
        .set('content-type', 'application/json')
        .send(bulkBody([{ entryId: '1', event: a }]));
      const second = await request(app)
        .post(route)
        .set('content-type', 'application/json')
        .send(
          bulkBody([
            { entryId: '2', event: a },
            { entryId: '3', event: b },
          ]),
        );
      assert.deepEqual(first.body, { statuses: [{ entryId: '1', status: 'SUCCESS' }] });
      assert.deepEqual(second.body, {
        statuses: [
          { entryId: '2', status: 'SUCCESS' },
          { entryId: '3', status: 'SUCCESS' },
        ],
      });
      assert.equal(runs, 2);
      assert.equal(await effects(), 2);
    });

    it('records event ids longer than the key column', async () => {
      let runs = 0;
      const app = appFor(async () => void runs++);
      const body = daprEnvelope({ id: `long-${'x'.repeat(400)}` });
      for (let i = 0; i < 2; i++) assert.deepEqual((await request(app).post(route).set(deliveryHeaders()).send(body)).body, { status: 'SUCCESS' });
      assert.equal(runs, 1);
      const [row] = await inboxRows();
      assert.ok(row!.event_id.length <= 191);
    });

    it('answers RETRY, without running the handler, when recording in the inbox fails (e.g. ER_LOCK_DEADLOCK)', async () => {
      const deadlock = Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), {
        parent: { code: 'ER_LOCK_DEADLOCK', errno: 1213 },
      });
      const failingInbox = { record: async () => Promise.reject(deadlock), deleteOlderThan: async () => 0 };
      const router = createSubscriptionRouter({ outbox: { inbox: failingInbox, transactions: outbox.transactions }, appApiToken: null, logger });
      let runs = 0;
      router.topic('pubsub', 'orders', async () => void runs++);
      const res = await request(appWith(router)).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'RETRY' });
      assert.equal(runs, 0);
      assert.ok(logger.entries.some((e) => e.level === 'warn' && e.context?.code === 'ER_LOCK_DEADLOCK'));
    });

    if (kind === 'mysql') {
      it('answers RETRY when MariaDB picks the delivery as a deadlock victim, and the redelivery succeeds once', async () => {
        await db.sequelize.query('CREATE TABLE IF NOT EXISTS router_locks (id INT PRIMARY KEY, v INT) ENGINE=InnoDB');
        await db.sequelize.query('CREATE TABLE IF NOT EXISTS router_weight (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB');
        await db.sequelize.query('INSERT IGNORE INTO router_locks VALUES (1, 0)');
        let runs = 0;
        const app = appFor(async (_d, ctx) => {
          runs++;
          await Effect.create({ eventId: ctx.id });
          await db.sequelize.query('SELECT v FROM router_locks WHERE id = 1 FOR UPDATE', { transaction: ctx.transaction as Transaction });
        });
        const other = db.another();
        const a = await other.transaction();
        // A writes more than the delivery will, so InnoDB rolls the delivery back (the lighter one).
        await other.query(`INSERT INTO router_weight (v) VALUES ${Array(200).fill('(1)').join(',')}`, { transaction: a });
        await other.query('SELECT v FROM router_locks WHERE id = 1 FOR UPDATE', { transaction: a });
        const body = daprEnvelope();
        const id = JSON.parse(body).id as string;
        const answer = request(app).post(route).set(deliveryHeaders()).send(body).then((r) => r);
        // Wait until the delivery (holding its inbox key) waits for A's row lock, in this test's
        // database (other test runs may share the server). MariaDB takes a const lookup's lock
        // while optimizing, where innodb_trx does not show LOCK WAIT: the process list does.
        const waiting = `SELECT COUNT(*) AS n FROM information_schema.processlist
          WHERE db = DATABASE() AND id <> CONNECTION_ID() AND command = 'Query' AND info LIKE 'SELECT v FROM router_locks%'`;
        for (;;) {
          const [row] = (await other.query(waiting, { type: QueryTypes.SELECT })) as Array<{ n: number }>;
          if (Number(row!.n) > 0) break;
          await sleep(5);
        }
        // ...then A asks for that inbox key: a cycle, which InnoDB breaks at once.
        await other
          .query(`INSERT IGNORE INTO ${outbox.tables.inbox} (consumer, event_id, handled_time) VALUES (?, ?, 0)`, { replacements: ['pubsub/orders', id], transaction: a })
          .catch(() => {});
        await a.rollback().catch(() => {});
        const res = await answer;
        assert.deepEqual(res.body, { status: 'RETRY' });
        assert.ok(logger.entries.some((e) => e.level === 'error' && /Deadlock/i.test(e.message)));
        assert.equal(await effects(), 0);
        const redelivery = await request(app).post(route).set(deliveryHeaders()).send(body);
        assert.deepEqual(redelivery.body, { status: 'SUCCESS' });
        assert.equal(runs, 2);
        assert.equal(await effects(), 1);
      });
    }

    it('works with { sequelize } alone (no outbox)', async () => {
      const router = createSubscriptionRouter({ sequelize: db.sequelize, appApiToken: null, logger });
      let runs = 0;
      router.topic('pubsub', 'orders', async (_d, ctx) => {
        runs++;
        assert.ok(ctx.transaction instanceof Transaction);
      });
      const app = appWith(router);
      const body = daprEnvelope();
      for (let i = 0; i < 2; i++) await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.equal(runs, 1);
    });

    it('runs without the inbox when inbox: false', async () => {
      const router = createSubscriptionRouter({ outbox, inbox: false, appApiToken: null, logger });
      let runs = 0;
      router.topic('pubsub', 'orders', async (_d, ctx) => {
        runs++;
        assert.equal(ctx.transaction, undefined);
      });
      const app = appWith(router);
      const body = daprEnvelope();
      for (let i = 0; i < 2; i++) await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.equal(runs, 2);
      assert.deepEqual(await inboxRows(), []);
    });
  });
}
