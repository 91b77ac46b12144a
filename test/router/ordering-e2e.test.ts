/**
 * Ordering keys end to end: 10 keys x 200 events written by 8 concurrent writers, published
 * through the outbox and the Dapr emulator, delivered to two consumers (two apps, each a router
 * with the inbox on), while the emulator reorders deliveries and sends late duplicates, publishes
 * fail now and then, and the handlers fail at random. Each consumer must see each key's events
 * take effect once each, in their sequence; the unkeyed events mixed in must all take effect
 * once. One event is poison (its handler drops it): its key goes on without it. Another fails
 * its first attempts: its key waits for it.
 */
import assert from 'node:assert/strict';
import { QueryTypes, type Model, type ModelStatic } from 'sequelize';
import { createOutbox, createSubscriptionRouter, DaprPublisher, DropError, type Outbox } from '../../src';
import { DaprEmulator } from '../../src/testing';
import { mulberry32 } from '../../src/testing/faults';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { appWith, defineEffect, listen, recordingLogger } from './helpers';

const KEYS = 10;
const PER_KEY = 200;
const WRITERS = 8;
/** One unkeyed event per this many keyed ones. */
const UNKEYED_EVERY = 10;
const CONSUMERS = ['shipping', 'billing'];
/** Dropped by its handler (DropError), at both consumers. */
const POISON = { key: 'order-3', sequence: 50 };
/** Fails its first attempts at each consumer, then succeeds. */
const STUBBORN = { key: 'order-4', sequence: 10, failures: 5 };

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const kind of testDialects()) {
  describe(`ordering keys end to end through the emulator (${kind})`, function () {
    this.timeout(420_000);
    let db: TestDb;
    let outbox: Outbox | undefined;
    let emu: DaprEmulator | undefined;
    let closeApps: (() => Promise<unknown>) | undefined;
    let Effect: ModelStatic<Model>;

    before(async () => {
      db = await createTestDb(kind);
      Effect = defineEffect(db.sequelize);
      await Effect.sync();
    });
    after(async () => {
      await outbox?.close();
      await emu?.stop();
      await closeApps?.();
      await db.close();
    });

    it(`${KEYS} keys x ${PER_KEY} events from ${WRITERS} writers, deliveries reordered and repeated, failures on: each key in sequence, once`, async () => {
      const rand = mulberry32(17);
      emu = await DaprEmulator.start({ appId: 'orders', resiliency: { retries: 40, intervalMs: 25 }, redelivery: { retries: 40, intervalMs: 200 } });
      outbox = createOutbox({
        sequelize: db.sequelize,
        publisher: new DaprPublisher({ daprPort: emu.port }),
        logger: recordingLogger(),
        leaseTime: 2,
        minimumRetryInterval: 0.2,
        maximumRetryInterval: 1,
        localFailedRetryInterval: 0.2,
        localRetryTimes: 2,
        maxRetryTimes: 1000,
      });
      await outbox.migrate();

      let handlerFailures = 0;
      const stubbornFailures = new Map<string, number>();
      const apps: Array<Awaited<ReturnType<typeof listen>>> = [];
      for (const consumer of CONSUMERS) {
        const router = createSubscriptionRouter({ outbox, appApiToken: null, logger: recordingLogger(), consumer });
        const handle = async (note: string, ctx: { id: string; event: Record<string, unknown> }) => {
          const key = ctx.event.partitionkey;
          const sequence = Number(ctx.event.sequence);
          if (key === POISON.key && sequence === POISON.sequence) throw new DropError('poison: can never be handled');
          if (key === STUBBORN.key && sequence === STUBBORN.sequence) {
            const n = (stubbornFailures.get(consumer) ?? 0) + 1;
            stubbornFailures.set(consumer, n);
            if (n <= STUBBORN.failures) throw new Error('not yet');
          }
          if (rand() < 0.05) {
            handlerFailures += 1;
            throw new Error('the handler failed this time');
          }
          await Effect.create({ eventId: ctx.id, note: `${consumer}:${note}` });
        };
        router.topic('pubsub', 'orders', (e: { key: string }, ctx) => handle(`keyed:${e.key}`, ctx));
        router.topic('pubsub', 'audit', (_e: unknown, ctx) => handle('unkeyed', ctx));
        const app = await listen(appWith(router));
        apps.push(app);
        await emu.attachApp({ appId: consumer, appUrl: app.url });
      }
      closeApps = () => Promise.all(apps.map((a) => a.close()));
      emu.faults.reorderDeliveries({ holdProbability: 0.3, maxHoldMs: 40, lateRedeliveryProbability: 0.1, lateRedeliveryMs: 80, seed: 5 });
      outbox.start();

      // The writers: each unit of work writes the next event of some key, and now and then an
      // unkeyed one. Which writer commits which event of a key is up to the race.
      const written = new Map<string, number>();
      let next = 0;
      let unkeyed = 0;
      const total = KEYS * PER_KEY;
      await Promise.all(
        Array.from({ length: WRITERS }, async () => {
          for (let i = next++; i < total; i = next++) {
            const key = `order-${i % KEYS}`;
            if (i === total / 4) emu!.faults.failNextPublishes(25);
            if (i === total / 2) emu!.faults.failPublishesFor(300);
            await outbox!.runInUnitOfWork(async () => {
              await outbox!.bus.publish({ id: `e-${i}`, topic: 'orders', key, n: i }, { orderingKey: key });
              if (i % UNKEYED_EVERY === 0) {
                unkeyed += 1;
                await outbox!.bus.publish({ id: `u-${i}`, topic: 'audit', n: i });
              }
            });
            written.set(key, (written.get(key) ?? 0) + 1);
          }
        }),
      );
      assert.deepEqual([...written.values()], Array.from({ length: KEYS }, () => PER_KEY));

      const expected = CONSUMERS.length * (total - 1 + unkeyed);
      await eventually(async () => (await Effect.count()) >= expected, 'every event to take effect', 360_000);
      await emu.idle();

      // Per consumer and key: the effects, in the order they committed, carry the sequence
      // numbers 1..200, without the poison one.
      const q = (n: string) => db.sequelize.getQueryInterface().quoteIdentifier(n);
      const rows = (await db.sequelize.query(
        `SELECT e.event_id AS id, e.note AS note, o.ordering_key AS k, o.key_sequence AS s FROM ${q('router_effects')} e ` +
          `JOIN integration_event_log o ON o.event_id = e.event_id ORDER BY e.id`,
        { type: QueryTypes.SELECT },
      )) as Array<{ id: string; note: string; k: string | null; s: number | string | null }>;
      assert.equal(rows.length, expected, 'every event took effect once per consumer, the poison one never');
      for (const consumer of CONSUMERS) {
        const mine = rows.filter((r) => r.note.startsWith(`${consumer}:`));
        const perEvent = new Map<string, number>();
        for (const r of mine) perEvent.set(r.id, (perEvent.get(r.id) ?? 0) + 1);
        assert.deepEqual([...perEvent].filter(([, n]) => n > 1), [], `${consumer}: no event took effect twice`);
        for (let k = 0; k < KEYS; k++) {
          const key = `order-${k}`;
          const sequences = mine.filter((r) => r.k === key).map((r) => Number(r.s));
          const all = Array.from({ length: PER_KEY }, (_, i) => i + 1);
          assert.deepEqual(sequences, key === POISON.key ? all.filter((n) => n !== POISON.sequence) : all, `${consumer}, ${key}: handled in sequence`);
        }
        assert.equal(mine.filter((r) => r.k === null && r.note === `${consumer}:unkeyed`).length, unkeyed, `${consumer}: unkeyed events unaffected`);
        // Its forced failures, then attempts until one passes the random failures too.
        assert.ok(stubbornFailures.get(consumer)! > STUBBORN.failures, `${consumer}: the stubborn event was tried until it succeeded`);
      }

      // The faults did happen: publishes failed, deliveries came back late, the handler failed.
      assert.ok(emu.publishes.some((p) => !p.accepted), 'some publishes failed');
      assert.ok(emu.deliveries.some((d) => d.late === true), 'some deliveries came late');
      assert.ok(emu.deliveries.some((d) => d.outcome === 'RETRY'), 'some deliveries were answered RETRY');
      assert.ok(emu.deliveries.some((d) => d.outcome === 'DROP'), 'the poison event was dropped');
      assert.ok(handlerFailures > 0);
      assert.deepEqual(emu.dropped.map((d) => d.eventId), [], 'the sidecar gave up on nothing');
    });
  });
}
