import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type express from 'express';
import request from 'supertest';
import { QueryTypes, type Model, type ModelStatic } from 'sequelize';
import { createOutbox, createSubscriptionRouter, DropError, type DeliveryContext, type Outbox, type TopicOptions } from '../../src';
import { silentLogger } from '../../src/core/logger';
import type { OutboxMessage } from '../../src/ports/publisher';
import type { InboxKey, InboxStore } from '../../src/ports/inbox-store';
import { createTestDb, testDialects, type DbKind, type TestDb } from '../support/db';
import { UserRegistered } from '../support/app';
import { RecordingPublisher } from '../support/recording-publisher';
import { appWith, bulkBody, cloudEvent, daprEnvelope, defineEffect, deliveryHeaders, listen, recordingLogger } from './helpers';

const dialects: DbKind[] = [...testDialects(), ...(process.env.TEST_POSTGRES_URL && !testDialects().includes('postgres') ? (['postgres'] as const) : [])];

/** Records, for each message, whether the handler's effect was committed when it was published. */
class CommitCheckingPublisher extends RecordingPublisher {
  readonly seenCommitted: boolean[] = [];
  constructor(private readonly committed: (account: string) => Promise<boolean>) {
    super();
  }
  override async publish(message: OutboxMessage): Promise<void> {
    this.seenCommitted.push(await this.committed((JSON.parse(message.content) as { account: string }).account));
    await super.publish(message);
  }
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

for (const kind of dialects) {
  describe(`subscription router: group commit (${kind})`, () => {
    const route = '/dapr-outbox/pubsub/orders';
    let db: TestDb;
    let outbox: Outbox;
    let publisher: CommitCheckingPublisher;
    let Effect: ModelStatic<Model>;
    let logger: ReturnType<typeof recordingLogger>;
    const closers: Array<() => Promise<void>> = [];

    before(async () => {
      db = await createTestDb(kind);
      publisher = new CommitCheckingPublisher(async (account) => (await Effect.count({ where: { eventId: account }, transaction: null })) === 1);
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

    const effects = async (eventId?: string) => Effect.count(eventId ? { where: { eventId } } : {});
    const inboxIds = async () =>
      ((await db.sequelize.query(`SELECT event_id FROM ${outbox.tables.inbox} ORDER BY event_id`, { type: QueryTypes.SELECT })) as Array<{ event_id: string }>).map((r) => r.event_id).sort();

    /**
     * A router with one delivery transaction at a time, and `together(sends)`, which makes a
     * group: a first delivery holds the transaction until the deliveries `sends` start have all
     * passed validation (they then wait for the next transaction), and their answers come back.
     */
    async function groupedApp(handler: (data: any, ctx: DeliveryContext) => unknown, options: TopicOptions = {}, inbox?: InboxStore, before: express.RequestHandler[] = []) {
      let validated = 0;
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const router = createSubscriptionRouter({
        outbox: inbox ? { inbox, transactions: outbox.transactions } : outbox,
        appApiToken: null,
        logger,
        groupCommit: { maxTransactions: 1 },
      });
      router.topic(
        'pubsub',
        'orders',
        async (data: { block?: boolean }, ctx) => {
          if (data?.block) return released;
          return handler(data, ctx);
        },
        {
          ...options,
          validate: () => {
            validated++;
            return true;
          },
        },
      );
      const server = await listen(appWith(...before, router));
      closers.push(server.close);
      // then() sends it now (a supertest request is lazy).
      const post = (body: string) =>
        request(server.url)
          .post(route)
          .set(deliveryHeaders())
          .send(body)
          .then((res) => res);
      /** Resolves once `n` deliveries have passed validation and been handed to the groups. */
      const queued = async (n: number) => {
        while (validated < n) await turn();
        await turn();
      };
      const together = async (sends: Array<() => Promise<request.Response>>) => {
        const blocked = post(daprEnvelope({ data: { block: true } }));
        await queued(1);
        const answers = Promise.all(sends.map((send) => send()));
        await queued(1 + sends.length);
        release();
        assert.deepEqual((await blocked).body, { status: 'SUCCESS' });
        return (await answers).map((a) => a.body.status as string);
      };
      return { post, together, server };
    }

    it('answers RETRY to the one failing handler of a group, and SUCCESS to the others, whose effects are committed', async () => {
      const txs = new Map<number, unknown>();
      const failedOnce = new Set<string>();
      const g = await groupedApp(async (data: { n: number; fail?: boolean }, ctx) => {
        if (!txs.has(data.n)) txs.set(data.n, ctx.transaction);
        await Effect.create({ eventId: ctx.id, note: String(data.n) });
        if (data.fail && !failedOnce.has(ctx.id)) {
          failedOnce.add(ctx.id);
          throw new Error('this one fails after writing');
        }
      });
      const bodies = [1, 2, 3, 4, 5].map((n) => daprEnvelope({ data: { n, fail: n === 3 } }));
      assert.deepEqual(await g.together(bodies.map((b) => () => g.post(b))), ['SUCCESS', 'SUCCESS', 'RETRY', 'SUCCESS', 'SUCCESS']);
      // 1, 2 and 3 shared a transaction; 3 failed there, and the others ran in the next one.
      assert.ok(txs.get(1) === txs.get(2) && txs.get(2) === txs.get(3), 'the first three shared one transaction');
      assert.ok(txs.get(4) === txs.get(5) && txs.get(4) !== txs.get(1), 'the others ran together in the next one');
      const ids = bodies.map((b) => JSON.parse(b).id as string);
      assert.deepEqual(
        await Promise.all(ids.map((id) => effects(id))),
        [1, 1, 0, 1, 1],
      );
      const recorded = await inboxIds();
      assert.equal(recorded.length, 5, 'the blocker and the four that succeeded');
      assert.ok(
        ids.every((id, i) => recorded.includes(id) === (i !== 2)),
        'the failed delivery is not recorded',
      );
      assert.ok(logger.entries.some((e) => e.level === 'error' && /this one fails/.test(e.message)));
      // daprd redelivers it: the handler runs again and its effect is kept.
      assert.deepEqual((await g.post(bodies[2]!)).body, { status: 'SUCCESS' });
      assert.equal(await effects(ids[2]), 1);
    });

    it('runs the handler once for duplicates within one group, also when the first of them fails', async () => {
      const runs = new Map<string, number>();
      const g = await groupedApp(async (data: { key: string }, ctx) => {
        const run = (runs.get(data.key) ?? 0) + 1;
        runs.set(data.key, run);
        await Effect.create({ eventId: ctx.id, note: data.key });
        if (data.key === 'x' && run === 1) throw new Error('first run of x fails');
      });
      const x = daprEnvelope({ data: { key: 'x' } });
      const y = daprEnvelope({ data: { key: 'y' } });
      const statuses = await g.together([x, y, x, y, x].map((b) => () => g.post(b)));
      assert.deepEqual([statuses[1], statuses[3]], ['SUCCESS', 'SUCCESS']);
      assert.deepEqual([statuses[0], statuses[2], statuses[4]].sort(), ['RETRY', 'SUCCESS', 'SUCCESS']);
      assert.deepEqual(Object.fromEntries(runs), { x: 2, y: 1 });
      assert.equal(await effects(JSON.parse(x).id), 1);
      assert.equal(await effects(JSON.parse(y).id), 1);
      assert.ok(logger.entries.some((e) => e.level === 'debug' && /duplicate delivery/.test(e.message)));
    });

    it("publishes the events of a group's handlers after its COMMIT, and none of a handler that failed", async () => {
      const before = publisher.messages.length;
      const g = await groupedApp(async (data: { fail?: boolean }, ctx) => {
        await Effect.create({ eventId: ctx.id });
        await outbox.bus.publish(new UserRegistered(ctx.id, '1'));
        if (data.fail) throw new Error('fails after publishing');
      });
      const bodies = [false, true, false, false].map((fail) => daprEnvelope({ data: { fail } }));
      assert.deepEqual(await g.together(bodies.map((b) => () => g.post(b))), ['SUCCESS', 'RETRY', 'SUCCESS', 'SUCCESS']);
      await outbox.drain();
      const published = publisher.messages.slice(before).map((m) => (JSON.parse(m.content) as { account: string }).account);
      const ids = bodies.map((b) => JSON.parse(b).id as string);
      assert.deepEqual(published.sort(), [ids[0], ids[2], ids[3]].sort());
      assert.ok(publisher.seenCommitted.slice(-3).every(Boolean), 'each event went out after its effect was committed');
    });

    it('answers a bulk delivery with mixed outcomes entry by entry, with exactly one effect per succeeded entry', async () => {
      const runs: string[] = [];
      const txs = new Set<unknown>();
      const failedOnce = new Set<string>();
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger });
      router.topic(
        'pubsub',
        'orders',
        async (data: { name: string }, ctx) => {
          runs.push(data.name);
          txs.add(ctx.transaction);
          await Effect.create({ eventId: ctx.id, note: data.name });
          if (data.name === 'throws' && !failedOnce.has(ctx.id)) {
            failedOnce.add(ctx.id);
            throw new Error('entry fails');
          }
          if (data.name === 'drop') return 'DROP';
          if (data.name === 'poison') throw new DropError('never');
          return undefined;
        },
        { bulk: true },
      );
      const app = appWith(router);
      const seen = cloudEvent({ data: { name: 'seen' } });
      assert.deepEqual((await request(app).post(route).set(deliveryHeaders()).send(JSON.stringify(seen))).body, { status: 'SUCCESS' });
      runs.length = 0;
      txs.clear();
      const ok = cloudEvent({ data: { name: 'ok' } });
      const entries = [
        { entryId: 'e1', event: ok },
        { entryId: 'e2', event: cloudEvent({ data: { name: 'throws' } }) },
        { entryId: 'e3', event: cloudEvent({ data: { name: 'drop' } }) },
        { entryId: 'e4', event: cloudEvent({ data: { name: 'poison' } }) },
        { entryId: 'e5', event: seen },
        { entryId: 'e6', event: ok },
        { entryId: 'e7', event: cloudEvent({ data: { name: 'last' } }) },
        { entryId: 'e8', event: cloudEvent({ id: undefined, data: { name: 'malformed' } }) },
      ];
      const send = async () => (await request(app).post(route).set('content-type', 'application/json').send(bulkBody(entries))).body.statuses.map((s: { status: string }) => s.status);
      assert.deepEqual(await send(), ['SUCCESS', 'RETRY', 'DROP', 'DROP', 'SUCCESS', 'SUCCESS', 'SUCCESS', 'DROP']);
      // The first failure rolls the batch's transaction back; the others run again in a second
      // one, each behind a savepoint, where the later failures make nobody else run again.
      assert.deepEqual(runs, ['ok', 'throws', 'ok', 'drop', 'poison', 'last']);
      assert.equal(txs.size, 2);
      const notes = (await Effect.findAll()).map((e) => e.get('note') as string).sort();
      assert.deepEqual(notes, ['last', 'ok', 'seen']);
      assert.deepEqual(await inboxIds(), [ok.id, seen.id, entries[6]!.event.id].map(String).sort());
      // The redelivery: what succeeded is a duplicate, the failed entry runs again and succeeds.
      runs.length = 0;
      txs.clear();
      assert.deepEqual(await send(), ['SUCCESS', 'SUCCESS', 'DROP', 'DROP', 'SUCCESS', 'SUCCESS', 'SUCCESS', 'DROP']);
      assert.deepEqual(runs, ['throws', 'drop', 'throws', 'poison']);
      assert.equal(await effects(String(entries[1]!.event.id)), 1);
      // A batch whose handlers all succeed is one transaction.
      runs.length = 0;
      txs.clear();
      const fresh = [1, 2, 3].map((n) => ({ entryId: `f${n}`, event: cloudEvent({ data: { name: `fresh ${n}` } }) }));
      const res = await request(app).post(route).set('content-type', 'application/json').send(bulkBody(fresh));
      assert.deepEqual(
        res.body.statuses.map((s: { status: string }) => s.status),
        ['SUCCESS', 'SUCCESS', 'SUCCESS'],
      );
      assert.deepEqual(runs, ['fresh 1', 'fresh 2', 'fresh 3']);
      assert.equal(txs.size, 1, 'one transaction for the bulk delivery');
    });

    it("runs each handler of a group in its own request's async context", async () => {
      const requestOf = new AsyncLocalStorage<string>();
      const seen: Array<[string | undefined, number]> = [];
      const g = await groupedApp(
        async (data: { n: number }) => {
          await Effect.create({ eventId: String(data.n) });
          seen.push([requestOf.getStore(), data.n]);
        },
        {},
        undefined,
        [(req, _res, next) => requestOf.run(String(req.headers['x-request'] ?? ''), next)],
      );
      const send = (n: number) => () =>
        request(g.server.url)
          .post(route)
          .set(deliveryHeaders({ 'x-request': `request ${n}` }))
          .send(daprEnvelope({ data: { n } }))
          .then((res) => res);
      assert.deepEqual(await g.together([1, 2, 3].map(send)), ['SUCCESS', 'SUCCESS', 'SUCCESS']);
      assert.deepEqual(seen.sort((a, b) => a[1] - b[1]), [
        ['request 1', 1],
        ['request 2', 2],
        ['request 3', 3],
      ]);
    });

    it('runs the members alone when the group transaction fails, so that each gets its own answer', async () => {
      const real = outbox.inbox!;
      let failures = 0;
      const flaky: InboxStore = {
        record: (consumer, eventId, tx, now) => real.record(consumer, eventId, tx, now),
        recordAll: async (keys: readonly InboxKey[], tx, now) => {
          if (keys.length > 1) {
            failures++;
            throw Object.assign(new Error('Lock wait timeout exceeded; try restarting transaction'), { parent: { code: 'ER_LOCK_WAIT_TIMEOUT' } });
          }
          return real.recordAll!(keys, tx, now);
        },
        remove: (keys, tx) => real.remove!(keys, tx),
        deleteOlderThan: (before, limit) => real.deleteOlderThan(before, limit),
      };
      const txs = new Set<unknown>();
      const g = await groupedApp(
        async (_d, ctx) => {
          txs.add(ctx.transaction);
          await Effect.create({ eventId: ctx.id });
        },
        {},
        flaky,
      );
      const bodies = [1, 2, 3].map((n) => daprEnvelope({ data: { n } }));
      assert.deepEqual(await g.together(bodies.map((b) => () => g.post(b))), ['SUCCESS', 'SUCCESS', 'SUCCESS']);
      assert.equal(failures, 1);
      assert.equal(txs.size, 3, 'each ran in a transaction of its own');
      assert.equal(await effects(), 3);
    });

    if (kind !== 'sqlite') {
      it('by default opens as many delivery transactions as the pool has connections: handlers that wait run side by side', async () => {
        const POOL = 4;
        const pool = db.another({ pool: { max: POOL } });
        closers.push(() => pool.close());
        const router = createSubscriptionRouter({ sequelize: pool, appApiToken: null, logger });
        let running = 0;
        let most = 0;
        router.topic('pubsub', 'orders', async () => {
          running++;
          most = Math.max(most, running);
          // Waits for the others (bounded): with fewer transactions than deliveries, they queue.
          for (let i = 0; i < 200 && running < POOL; i++) await new Promise((resolve) => setTimeout(resolve, 10));
          running--;
        });
        const server = await listen(appWith(router));
        closers.push(server.close);
        const answers = await Promise.all(
          Array.from({ length: POOL }, () => request(server.url).post(route).set(deliveryHeaders()).send(daprEnvelope({ id: randomUUID(), data: {} }))),
        );
        assert.deepEqual(answers.map((a) => a.body.status), Array(POOL).fill('SUCCESS'));
        assert.equal(most, POOL, 'every delivery had a transaction of its own at once');
      });
    }

    if (kind === 'postgres') {
      it('keeps the group when a handler swallows a failed statement (PostgreSQL aborts its transaction)', async () => {
        const g = await groupedApp(async (data: { swallow?: boolean }, ctx) => {
          await Effect.create({ eventId: ctx.id });
          if (data.swallow) await db.sequelize.query('SELECT * FROM no_such_table', { transaction: ctx.transaction as never }).catch(() => {});
        });
        const bodies = [false, true, false].map((swallow) => daprEnvelope({ id: randomUUID(), data: { swallow } }));
        assert.deepEqual(await g.together(bodies.map((b) => () => g.post(b))), ['SUCCESS', 'RETRY', 'SUCCESS']);
        const ids = bodies.map((b) => JSON.parse(b).id as string);
        assert.deepEqual(await Promise.all(ids.map((id) => effects(id))), [1, 0, 1]);
      });
    }
  });
}
