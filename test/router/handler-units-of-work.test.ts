/**
 * A subscription handler that calls service code written with `outbox.runInUnitOfWork()`: the
 * unit of work joins the delivery's transaction, so a failed delivery keeps nothing and its
 * redelivery has the one effect.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { createSubscriptionRouter } from '../../src';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { createTestService, UserRegistered, type TestService } from '../support/app';
import { appWith, daprEnvelope, deliveryHeaders, recordingLogger } from './helpers';

for (const kind of testDialects()) {
  describe(`runInUnitOfWork inside a subscription handler (${kind})`, () => {
    let db: TestDb;
    let svc: TestService;

    beforeEach(async () => {
      db = await createTestDb(kind);
      svc = await createTestService(db.sequelize, { writeLockWait: 2 });
    });
    afterEach(async () => {
      await svc.outbox.close();
      await db.close();
    });

    it('joins the delivery: a failed attempt keeps nothing, the redelivery has one effect and one event', async function () {
      this.timeout(30_000);
      const register = (account: string) =>
        svc.outbox.runInUnitOfWork(async () => {
          await svc.User.create({ account, mobile: '1' });
          await svc.outbox.bus.publish(new UserRegistered(account, '1'));
        });
      const router = createSubscriptionRouter({ outbox: svc.outbox, appApiToken: null, logger: recordingLogger() });
      let attempts = 0;
      router.topic('pubsub', 'orders', async (data: { account: string }) => {
        attempts += 1;
        await register(data.account);
        if (attempts === 1) throw new Error('fails after the service call, the first time only');
      });
      const app = appWith(router);
      const body = daprEnvelope({ data: { account: 'from-delivery' } });
      const first = await request(app).post('/dapr-outbox/pubsub/orders').set(deliveryHeaders()).send(body);
      assert.deepEqual(first.body, { status: 'RETRY' });
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 0, 'the failed attempt kept nothing');
      assert.equal(svc.publisher.messages.length, 0);

      const second = await request(app).post('/dapr-outbox/pubsub/orders').set(deliveryHeaders()).send(body);
      assert.deepEqual(second.body, { status: 'SUCCESS' });
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 1);
      assert.deepEqual(svc.publisher.messages.map((m) => JSON.parse(m.content).account), ['from-delivery']);
      assert.equal(attempts, 2);
    });
  });
}
