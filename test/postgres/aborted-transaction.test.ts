import assert from 'node:assert/strict';
import request from 'supertest';
import { QueryTypes, UniqueConstraintError, type Model, type ModelStatic, type Transaction } from 'sequelize';
import { createSubscriptionRouter, OutboxError, type Outbox } from '../../src';
import { commitTransaction } from '../../src/adapters/sequelize/commit';
import { createTestDb, requirePostgres, type TestDb } from '../support/db';
import { createTestService, defineUser, UserRegistered, type TestService } from '../support/app';
import { appWith, daprEnvelope, defineEffect, deliveryHeaders, recordingLogger } from '../router/helpers';

// On PostgreSQL a failed statement aborts the whole transaction, and a later COMMIT "succeeds"
// with the command tag ROLLBACK instead of an error. A handler that catches the failure and
// returns normally must not be answered as if its writes were kept.

/** Inserts a duplicate account and swallows the unique violation, as a careless handler would. */
async function insertDuplicateAndCatch(User: ModelStatic<Model>): Promise<void> {
  try {
    await User.create({ account: 'taken', mobile: '0' });
    assert.fail('the duplicate insert succeeded');
  } catch (err) {
    assert.ok(err instanceof UniqueConstraintError, `expected a unique violation, got ${String(err)}`);
  }
}

describe('PostgreSQL: a transaction aborted by a caught error is not reported as committed', () => {
  let db: TestDb | undefined;
  before(async function () {
    requirePostgres(this);
    db = await createTestDb('postgres');
  });
  after(async () => {
    await db?.close();
  });

  describe('subscription router delivery', () => {
    const route = '/dapr-outbox/pubsub/orders';
    let outbox: Outbox;
    let svc: TestService;
    let Effect: ModelStatic<Model>;

    before(async () => {
      svc = await createTestService(db!.sequelize);
      outbox = svc.outbox;
      Effect = defineEffect(db!.sequelize);
      await Effect.sync();
    });
    after(() => outbox.close());
    beforeEach(async () => {
      await svc.User.destroy({ where: {} });
      await svc.User.create({ account: 'taken', mobile: '0' });
      await Effect.destroy({ where: {} });
      await db!.sequelize.query(`DELETE FROM ${outbox.tables.inbox}`);
    });

    it('answers RETRY, and keeps neither the handler writes nor the inbox row', async () => {
      const logger = recordingLogger();
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger });
      let runs = 0;
      router.topic('pubsub', 'orders', async (_data, ctx) => {
        runs++;
        await Effect.create({ eventId: ctx.id });
        await insertDuplicateAndCatch(svc.User);
      });
      const body = daprEnvelope();
      const res = await request(appWith(router)).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(res.body, { status: 'RETRY' });
      assert.equal(runs, 1);
      assert.equal(await Effect.count(), 0);
      const inbox = await db!.sequelize.query(`SELECT event_id FROM ${outbox.tables.inbox}`, { type: QueryTypes.SELECT });
      assert.deepEqual(inbox, []);
      assert.ok(logger.entries.some((e) => /instead of committing/.test(e.message)), JSON.stringify(logger.entries));

      // The redelivery runs the handler again (the event is not taken for handled).
      const again = await request(appWith(router)).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(again.body, { status: 'RETRY' });
      assert.equal(runs, 2);
    });

    it('still answers SUCCESS and keeps the writes of a handler whose statements all succeeded', async () => {
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger: recordingLogger() });
      router.topic('pubsub', 'orders', async (_data, ctx) => {
        await Effect.create({ eventId: ctx.id });
      });
      const body = daprEnvelope();
      const res = await request(appWith(router)).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(res.body, { status: 'SUCCESS' });
      assert.equal(await Effect.count(), 1);
      const inbox = await db!.sequelize.query(`SELECT event_id FROM ${outbox.tables.inbox}`, { type: QueryTypes.SELECT });
      assert.deepEqual(inbox, [{ event_id: JSON.parse(body).id }]);
      const duplicate = await request(appWith(router)).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(duplicate.body, { status: 'SUCCESS' });
      assert.equal(await Effect.count(), 1);
    });
  });

  describe('commitTransaction', () => {
    let User: ModelStatic<Model>;
    before(async () => {
      User = defineUser(db!.sequelize);
      await User.sync();
    });
    beforeEach(async () => {
      await User.destroy({ where: {} });
      await User.create({ account: 'taken', mobile: '0' });
    });

    async function abortedTransaction(): Promise<Transaction> {
      const tx = await db!.sequelize.transaction();
      await User.create({ account: 'lost', mobile: '1' }, { transaction: tx });
      await assert.rejects(User.create({ account: 'taken', mobile: '1' }, { transaction: tx }), UniqueConstraintError);
      return tx;
    }

    it('rolls back an aborted transaction instead of committing it, and skips afterCommit hooks', async () => {
      const tx = await abortedTransaction();
      let hooks = 0;
      tx.afterCommit(() => void hooks++);
      await assert.rejects(commitTransaction(tx), (err: Error) => err instanceof OutboxError && /instead of committing/.test(err.message));
      assert.equal(hooks, 0);
      assert.equal(await User.count({ where: { account: 'lost' } }), 0);
    });

    it('tells from the command tag with drivers that do not report the transaction status (pg before 8.21)', async () => {
      const tx = await abortedTransaction();
      (tx as unknown as { connection: { getTransactionStatus?: unknown } }).connection.getTransactionStatus = undefined;
      await assert.rejects(commitTransaction(tx), /instead of committing/);
      delete (tx as unknown as { connection: { getTransactionStatus?: unknown } }).connection.getTransactionStatus;
    });

    it('waits for a statement still in flight, and rolls back when it failed', async () => {
      const tx = await db!.sequelize.transaction();
      // A statement not awaited by its handler, already on the server when COMMIT is queued behind it.
      const inFlight = db!.sequelize.query('SELECT pg_sleep(0.2), 1 / 0', { transaction: tx }).catch((err: unknown) => err);
      await new Promise((r) => setTimeout(r, 50));
      let hooks = 0;
      tx.afterCommit(() => void hooks++);
      await assert.rejects(commitTransaction(tx), /instead of committing/);
      assert.equal(hooks, 0);
      assert.match(String(await inFlight), /division by zero/);
    });

    it('does not wait on a connection that died with a statement in flight', async () => {
      const tx = await db!.sequelize.transaction();
      const pid = ((await db!.sequelize.query('SELECT pg_backend_pid() AS pid', { transaction: tx, plain: true })) as { pid: number }).pid;
      const inFlight = db!.sequelize.query('SELECT pg_sleep(5)', { transaction: tx }).catch((err: unknown) => err);
      await new Promise((r) => setTimeout(r, 50));
      await db!.sequelize.query(`SELECT pg_terminate_backend(${pid})`, { transaction: null });
      await inFlight;
      const started = Date.now();
      // Sequelize reports the failed COMMIT with console.warn; expected here.
      const warn = console.warn;
      console.warn = () => {};
      try {
        await assert.rejects(commitTransaction(tx));
      } finally {
        console.warn = warn;
      }
      assert.ok(Date.now() - started < 2000);
    });

    it('commits a healthy transaction', async () => {
      const tx = await db!.sequelize.transaction();
      await User.create({ account: 'kept', mobile: '1' }, { transaction: tx });
      await commitTransaction(tx);
      assert.equal(await User.count({ where: { account: 'kept' } }), 1);
    });
  });

  describe('request under the unit-of-work middleware', () => {
    let svc: TestService;

    before(async () => {
      svc = await createTestService(db!.sequelize);
      svc.app.post('/careless', async (req, res) => {
        const { account, publish } = req.body as { account: string; publish?: boolean };
        await svc.User.create({ account, mobile: '1' });
        if (publish) await svc.outbox.bus.publish(new UserRegistered(account, '1'));
        await insertDuplicateAndCatch(svc.User);
        res.status(200).json({ ok: true });
      });
    });
    after(() => svc.outbox.close());
    beforeEach(async () => {
      await svc.User.destroy({ where: {} });
      await svc.User.create({ account: 'taken', mobile: '0' });
      await db!.sequelize.query(`DELETE FROM ${svc.outbox.tables.outbox}`);
      svc.publisher.messages.length = 0;
    });

    const accounts = async () => (await svc.User.findAll({ order: [['account', 'ASC']] })).map((u) => u.get('account'));

    it('answers 500 when the handler caught a failed insert and answered 200', async () => {
      const res = await request(svc.app).post('/careless').send({ account: 'alice' });
      assert.equal(res.status, 500);
      assert.equal(res.body.error, 'UnitOfWorkError');
      assert.deepEqual(await accounts(), ['taken']);
    });

    it('answers 500 and keeps no event row when the handler had published an event', async () => {
      const res = await request(svc.app).post('/careless').send({ account: 'bob', publish: true });
      assert.equal(res.status, 500);
      await svc.outbox.drain();
      assert.deepEqual(await accounts(), ['taken']);
      const rows = await db!.sequelize.query(`SELECT event_id FROM ${svc.outbox.tables.outbox}`, { type: QueryTypes.SELECT });
      assert.deepEqual(rows, []);
      assert.equal(svc.publisher.messages.length, 0);
    });

    it('still commits a request whose statements all succeeded', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'carol', mobile: '1' });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      assert.deepEqual(await accounts(), ['carol', 'taken']);
      assert.equal(svc.publisher.messages.length, 1);
      assert.equal((await svc.outbox.stats()).published, 1);
    });
  });
});
