import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Model, ModelStatic } from 'sequelize';
import { createOutbox, createSubscriptionRouter, DaprPublisher, DropError, type Outbox, type SubscriptionRouter } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { DaprEmulator, type DaprEmulatorOptions } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { UserRegistered } from '../support/app';
import { appWith, defineEffect, listen, recordingLogger } from './helpers';

/** Publish -> sidecar emulator -> router -> handler, over real HTTP, with the inbox on a real database. */
for (const kind of testDialects()) {
  describe(`subscription router end to end through the Dapr emulator (${kind})`, () => {
    let db: TestDb;
    let outbox: Outbox;
    let Effect: ModelStatic<Model>;
    let emu: DaprEmulator | undefined;
    let app: Awaited<ReturnType<typeof listen>> | undefined;
    let logger: ReturnType<typeof recordingLogger>;

    before(async () => {
      db = await createTestDb(kind);
      // A publisher that is never used: these tests publish through the emulator's HTTP API, or
      // through their own outbox in the test of the whole path.
      outbox = createOutbox({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: 1 }), logger: silentLogger });
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
    });
    afterEach(async () => {
      await emu?.stop();
      await app?.close();
      emu = undefined;
      app = undefined;
    });

    /** Starts the app (router on a real port) and the emulator, and attaches the app. */
    async function start(configure: (router: SubscriptionRouter) => void, emulator: DaprEmulatorOptions = {}, appApiToken: string | null = null) {
      const router = createSubscriptionRouter({ outbox, appApiToken, logger });
      configure(router);
      app = await listen(appWith(router));
      emu = await DaprEmulator.start({ appId: 'publisher', ...emulator });
      const subscriptions = await emu.attachApp({ appId: 'subscriber', appUrl: app.url });
      return { emu, subscriptions };
    }
    const publish = (e: DaprEmulator, topic: string, body: string, contentType = 'application/json') =>
      fetch(`${e.url}/v1.0/publish/pubsub/${encodeURIComponent(topic)}`, { method: 'POST', body, headers: { 'content-type': contentType } });

    it('delivers a published event to the handler, once, with the CloudEvent context', async () => {
      const got: Array<{ data: unknown; id: string; source: string }> = [];
      const { emu, subscriptions } = await start((r) =>
        r.topic('pubsub', 'orders', async (data, ctx) => {
          got.push({ data, id: ctx.id, source: ctx.event.source });
          await Effect.create({ eventId: ctx.id });
        }),
      );
      assert.equal(subscriptions.length, 1);
      assert.equal(subscriptions[0]!.rules[0]!.path, '/dapr-outbox/pubsub/orders');
      assert.equal((await publish(emu, 'orders', '{"orderId":7}')).status, 204);
      await emu.idle();
      assert.equal(got.length, 1);
      assert.deepEqual(got[0]!.data, { orderId: 7 });
      assert.equal(got[0]!.source, 'publisher');
      assert.equal(emu.deliveries.length, 1);
      assert.equal(emu.deliveries[0]!.outcome, 'SUCCESS');
      assert.equal(emu.deliveries[0]!.eventId, got[0]!.id);
      assert.equal(await Effect.count(), 1);
    });

    it('goes the whole way: outbox commit -> DaprPublisher -> sidecar -> router -> handler, with the event id as CloudEvent id', async () => {
      const ids: string[] = [];
      const { emu } = await start((r) =>
        r.topic('pubsub', 'UserRegistered', async (data: { account: string }, ctx) => {
          ids.push(ctx.id);
          await Effect.create({ eventId: ctx.id, note: data.account });
        }),
      );
      const sender = createOutbox({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: emu.port, timeoutMs: 5000 }), logger: silentLogger });
      try {
        const event = new UserRegistered('alice', '123');
        await sender.runInUnitOfWork(() => sender.bus.publish(event));
        await sender.drain();
        await emu.idle();
        assert.deepEqual(ids, [event.id]);
        assert.deepEqual(
          (await Effect.findAll()).map((e) => e.get('note')),
          ['alice'],
        );
      } finally {
        await sender.close();
      }
    });

    it('runs a redelivered event id (pinned by the publisher) once, answering SUCCESS both times', async () => {
      let runs = 0;
      const { emu } = await start((r) =>
        r.topic('pubsub', 'orders', async (_d, ctx) => {
          runs++;
          await Effect.create({ eventId: ctx.id });
        }),
      );
      const id = randomUUID();
      const ce = JSON.stringify({ specversion: '1.0', id, source: 'users', type: 'OrderPlaced', datacontenttype: 'application/json', data: { n: 1 } });
      for (let i = 0; i < 2; i++) assert.equal((await publish(emu, 'orders', ce, 'application/cloudevents+json')).status, 204);
      await emu.idle();
      assert.equal(runs, 1);
      assert.deepEqual(
        emu.deliveries.map((d) => [d.eventId, d.outcome]),
        [
          [id, 'SUCCESS'],
          [id, 'SUCCESS'],
        ],
      );
      assert.equal(await Effect.count(), 1);
    });

    it('retries a failed handler under a resiliency policy; the retry runs it again and the effect happens once', async () => {
      let runs = 0;
      const { emu } = await start(
        (r) =>
          r.topic('pubsub', 'orders', async (_d, ctx) => {
            runs++;
            await Effect.create({ eventId: ctx.id });
            if (runs === 1) throw new Error('transient');
          }),
        { resiliency: { retries: 2, intervalMs: 1 } },
      );
      await publish(emu, 'orders', '{"n":1}');
      await emu.idle();
      assert.deepEqual(
        emu.deliveries.map((d) => d.outcome),
        ['RETRY', 'SUCCESS'],
      );
      assert.equal(runs, 2);
      assert.equal(await Effect.count(), 1);
    });

    it('sends dropped messages (DropError, failed validation) to the dead-letter topic', async () => {
      const { emu } = await start((r) =>
        r.topic(
          'pubsub',
          'orders',
          async (data: { n: number }) => {
            if (data.n === 2) throw new DropError('n = 2 can never be handled');
          },
          { deadLetterTopic: 'poison', validate: (d) => typeof (d as { n?: unknown }).n === 'number' },
        ),
      );
      await publish(emu, 'orders', '{"n":1}');
      await publish(emu, 'orders', '{"n":2}');
      await publish(emu, 'orders', '{"n":"x"}');
      await emu.idle();
      assert.deepEqual(
        emu.deliveries.map((d) => d.outcome).sort(),
        ['DROP', 'DROP', 'SUCCESS'],
      );
      assert.equal(emu.deadLetters.length, 2);
      assert.ok(emu.deadLetters.every((d) => d.deadLetterTopic === 'poison'));
    });

    it('delivers through bulk subscribe with one status per entry', async () => {
      const seen: number[] = [];
      const { emu, subscriptions } = await start((r) =>
        r.topic(
          'pubsub',
          'orders',
          async (data: { n: number }, ctx) => {
            seen.push(data.n);
            if (data.n === 3) return 'DROP';
            await Effect.create({ eventId: ctx.id });
          },
          { bulk: { maxMessagesCount: 5, maxAwaitDurationMs: 20 } },
        ),
      );
      assert.deepEqual(subscriptions[0]!.bulkSubscribe, { enabled: true, maxMessagesCount: 5, maxAwaitDurationMs: 20 });
      for (let n = 1; n <= 5; n++) await publish(emu, 'orders', JSON.stringify({ n }));
      await emu.idle();
      // Every entry ran; those that shared a batch with entry 3 ran again after its DROP rolled
      // the batch's transaction back. Their effects are there once each.
      assert.deepEqual(
        [...new Set(seen)].sort(),
        [1, 2, 3, 4, 5],
      );
      assert.equal(seen.filter((n) => n === 3).length, 1);
      assert.ok(emu.deliveries.every((d) => d.bulk));
      assert.deepEqual(
        emu.deliveries.map((d) => d.outcome).sort(),
        ['DROP', 'SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS'],
      );
      assert.equal(await Effect.count(), 4);
    });

    it('hands the broker bytes of a rawPayload subscription over as a Buffer', async () => {
      const got: unknown[] = [];
      const { emu } = await start((r) => r.topic('pubsub', 'raw', async (data) => void got.push(data), { rawPayload: true }));
      const res = await fetch(`${emu.url}/v1.0/publish/pubsub/raw?metadata.rawPayload=true`, { method: 'POST', body: 'legacy bytes', headers: { 'content-type': 'text/plain' } });
      assert.equal(res.status, 204);
      await emu.idle();
      assert.deepEqual(got, [Buffer.from('legacy bytes')]);
    });

    it('checks the app API token the sidecar sends', async () => {
      let runs = 0;
      const { emu, subscriptions } = await start((r) => r.topic('pubsub', 'orders', async () => void runs++), { appApiToken: 'tok-123' }, 'tok-123');
      assert.equal(subscriptions.length, 1);
      await publish(emu, 'orders', '{}');
      await emu.idle();
      assert.equal(runs, 1);
      assert.equal(emu.deliveries[0]!.outcome, 'SUCCESS');
    });

    it('gives a sidecar with the wrong token no subscriptions', async () => {
      const warnings: string[] = [];
      const { subscriptions } = await start((r) => r.topic('pubsub', 'orders', async () => {}), { appApiToken: 'wrong', logger: { info: () => {}, warn: (m) => void warnings.push(m) } }, 'right');
      assert.deepEqual(subscriptions, []);
      assert.ok(warnings.some((w) => /401/.test(w)), JSON.stringify(warnings));
    });
  });
}
