import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { createOutbox, createSubscriptionRouter, type Outbox } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { RecordingPublisher } from '../support/recording-publisher';
import { createTestDb, serverDialects, testDialects, type TestDb } from '../support/db';
import { appWith, daprEnvelope, deliveryHeaders, listen } from './helpers';

const POOL = 3;

for (const kind of serverDialects()) {
  describe(`subscription router: one slow key among many deliveries (${kind})`, function () {
    this.timeout(60_000);
    let db: TestDb;
    let outbox: Outbox;

    before(async () => {
      db = await createTestDb(kind);
      // A small pool that gives up quickly: a delivery that cannot get a connection fails fast.
      const sequelize = db.another({ pool: { max: POOL, min: 0, acquire: 3_000 } });
      outbox = createOutbox({ sequelize, publisher: new RecordingPublisher(), logger: silentLogger });
      await outbox.migrate();
    });
    after(async () => {
      await outbox.close();
      await db.close();
    });

    it('keeps unkeyed deliveries and other keys flowing while many deliveries of one key wait for its slow head', async () => {
      const consumer = `slow-${randomUUID().slice(0, 8)}`;
      const runs: string[] = [];
      let started!: () => void;
      const headStarted = new Promise<void>((resolve) => (started = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger: silentLogger, consumer });
      router.topic('pubsub', 'orders', async (data: { key: string; sequence: string }) => {
        runs.push(`${data.key}:${data.sequence}`);
        if (data.key === 'slow' && data.sequence === '1') {
          started();
          await released;
        }
      });
      const server = await listen(appWith(router));
      try {
        const send = (fields: Record<string, unknown>) =>
          request(server.url)
            .post('/dapr-outbox/pubsub/orders')
            .set(deliveryHeaders())
            .send(daprEnvelope({ id: randomUUID(), ...fields }))
            .then((r) => (r.body as { status?: string }).status ?? `HTTP ${r.status}`);
        const keyed = (key: string, sequence: number) => send({ partitionkey: key, sequence: String(sequence), data: { key, sequence: String(sequence) } });
        const head = keyed('slow', 1);
        await headStarted;
        // Deliveries of the slow key: one of them is the duplicate of the head that is still running.
        const waiting = [keyed('slow', 1), keyed('slow', 2), keyed('slow', 2), keyed('slow', 3), keyed('slow', 3)];
        await new Promise((r) => setTimeout(r, 300));
        // While the head runs, an unkeyed event and another key must still be handled.
        const others = await Promise.all([send({ data: { key: 'plain', sequence: '0' } }), keyed('other', 1)]);
        const slowRuns = runs.filter((r) => r.startsWith('slow:'));
        release();
        const rest = await Promise.all([head, ...waiting]);
        assert.deepEqual(slowRuns, ['slow:1'], 'the slow head was still running');
        assert.deepEqual(others, ['SUCCESS', 'SUCCESS']);
        assert.equal(rest[0], 'SUCCESS');
      } finally {
        release();
        await server.close();
      }
    });
  });
}

for (const kind of testDialects()) {
  describe(`subscription router: one consumer name on several topics (${kind})`, function () {
    this.timeout(60_000);
    let db: TestDb;
    let outbox: Outbox;

    before(async () => {
      db = await createTestDb(kind);
      outbox = createOutbox({ sequelize: db.sequelize, publisher: new RecordingPublisher(), logger: silentLogger });
      await outbox.migrate();
    });
    after(async () => {
      await outbox.close();
      await db.close();
    });

    it('keeps a key position per topic: the same key numbered on two topics is handled on both', async () => {
      // One service name as the consumer of every topic, as a group is named in CAP.
      const consumer = `billing-${randomUUID().slice(0, 8)}`;
      const runs: string[] = [];
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger: silentLogger });
      for (const topic of ['orders', 'payments']) {
        router.topic('pubsub', topic, async (data: { n: number }) => void runs.push(`${topic}:${data.n}`), { consumer });
      }
      const app = appWith(router);
      const send = async (topic: string, sequence: number) =>
        ((await request(app).post(`/dapr-outbox/pubsub/${topic}`).set(deliveryHeaders()).send(daprEnvelope({ id: randomUUID(), topic, partitionkey: 'order-1', sequence: String(sequence), data: { n: sequence } }))).body as { status: string }).status;
      const answers = [await send('orders', 1), await send('orders', 2), await send('payments', 1), await send('payments', 2), await send('orders', 3)];
      assert.deepEqual(answers, ['SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS']);
      assert.deepEqual(runs, ['orders:1', 'orders:2', 'payments:1', 'payments:2', 'orders:3']);
    });
  });
}
