/**
 * Event ids are compared byte for byte on every database: ids that differ only in case, or in
 * trailing spaces, are different events in the outbox and in the inbox.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { QueryTypes } from 'sequelize';
import { createOutbox, createSubscriptionRouter, type Outbox } from '../../src';
import { runMigrations, migrations } from '../../src/extend';
import { silentLogger } from '../../src/core/logger';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { appWith, daprEnvelope, deliveryHeaders } from '../router/helpers';

for (const kind of testDialects()) {
  describe(`event ids compare byte for byte (${kind})`, () => {
    let db: TestDb;
    let outbox: Outbox;
    let publisher: RecordingPublisher;
    beforeEach(async () => {
      db = await createTestDb(kind);
      publisher = new RecordingPublisher();
      outbox = createOutbox({ sequelize: db.sequelize, publisher, logger: silentLogger });
    });
    afterEach(async () => {
      await outbox.close();
      await db.close();
    });

    it('keeps `invoice-42` and `Invoice-42` as two outbox rows, and publishes both', async () => {
      await outbox.migrate();
      await outbox.bus.publish({ id: 'invoice-42', topic: 'invoices' });
      await outbox.bus.publish({ id: 'Invoice-42', topic: 'invoices' });
      await outbox.drain();
      assert.deepEqual(publisher.messages.map((m) => m.id).sort(), ['Invoice-42', 'invoice-42']);
      assert.equal((await outbox.stats()).published, 2);
    });

    it('takes `sp ` and `sp` for two events in the inbox', async () => {
      await outbox.migrate();
      const ids: string[] = [];
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger: silentLogger });
      router.topic('pubsub', 'orders', async (_data, ctx) => void ids.push(ctx.id));
      const app = appWith(router);
      for (const id of ['sp', 'sp ', 'sp', 'SP']) {
        const res = await request(app).post('/dapr-outbox/pubsub/orders').set(deliveryHeaders()).send(daprEnvelope({ id }));
        assert.deepEqual(res.body, { status: 'SUCCESS' });
      }
      assert.deepEqual(ids, ['sp', 'sp ', 'SP']);
    });

    it('upgrades tables made by the first steps', async () => {
      await runMigrations(db.sequelize, outbox.tables, migrations.slice(0, 2));
      await db.sequelize.query(`INSERT INTO integration_event_inbox (consumer, event_id, handled_time) VALUES ('c', 'sp', 0)`);
      assert.deepEqual(await outbox.migrate(), migrations.slice(2).map((m) => m.name));
      await db.sequelize.query(`INSERT INTO integration_event_inbox (consumer, event_id, handled_time) VALUES ('c', 'sp ', 0), ('c', 'SP', 0)`);
      const rows = (await db.sequelize.query('SELECT event_id FROM integration_event_inbox', { type: QueryTypes.SELECT })) as Array<{ event_id: string }>;
      assert.deepEqual(rows.map((r) => r.event_id).sort(), ['SP', 'sp', 'sp ']);
      await outbox.bus.publish({ id: 'invoice-42', topic: 'invoices' });
      await outbox.bus.publish({ id: 'Invoice-42', topic: 'invoices' });
      await outbox.drain();
      assert.equal((await outbox.stats()).published, 2);
    });
  });
}
