import assert from 'node:assert/strict';
import express from 'express';
import request from 'supertest';
import { EventValidationError, IntegrationEvent } from '../../src';
import { EventState } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { createTestService, UserRegistered, type TestService } from '../support/app';
import { readRows } from '../support/rows';
import { createDeferredForeignKey, ORPHAN_INSERT } from '../support/failing-commit';

class CustomTopicEvent extends IntegrationEvent {
  static topic = 'users/custom';
  constructor(public n: number) {
    super();
  }
}

for (const kind of testDialects()) {
  describe(`bus.publish (${kind})`, () => {
    let db: TestDb;
    let svc: TestService;

    beforeEach(async () => {
      db = await createTestDb(kind);
      svc = await createTestService(db.sequelize);
    });
    afterEach(async () => {
      await svc.outbox.close();
      await db.close();
    });

    it('joins an explicit transaction and dispatches only after it commits', async () => {
      const tx = await db.sequelize.transaction();
      const event = new UserRegistered('job', '1');
      await svc.outbox.bus.publish(event, { transaction: tx });
      await svc.outbox.drain();
      assert.equal(svc.publisher.messages.length, 0, 'nothing is published before COMMIT');
      await tx.commit();
      await svc.outbox.drain();
      assert.deepEqual(svc.publisher.ids(), [event.id]);
      const [row] = await readRows(svc.outbox, [event.id]);
      assert.equal(row?.state, EventState.Published);
    });

    it('writes nothing and publishes nothing when the explicit transaction rolls back', async () => {
      const tx = await db.sequelize.transaction();
      const event = new UserRegistered('job', '1');
      await svc.outbox.bus.publish(event, { transaction: tx });
      await tx.rollback();
      await svc.outbox.drain();
      assert.equal(svc.publisher.messages.length, 0);
      assert.deepEqual(await readRows(svc.outbox, [event.id]), []);
    });

    if (kind === 'sqlite') {
      it('publishes nothing when the COMMIT of the transaction it joined fails (after-commit hooks run anyway)', async () => {
        await createDeferredForeignKey(db.sequelize);
        const event = new UserRegistered('orphan', '1');
        await assert.rejects(
          db.sequelize.transaction(async () => {
            await db.sequelize.query(ORPHAN_INSERT);
            await svc.outbox.bus.publish(event);
          }),
          /FOREIGN KEY/,
        );
        await svc.outbox.drain();
        assert.equal(svc.publisher.messages.length, 0);
        assert.deepEqual(await readRows(svc.outbox, [event.id]), []);
      });
    }

    it('joins the ambient transaction of a managed Sequelize transaction', async () => {
      const event = new UserRegistered('managed', '1');
      await db.sequelize.transaction(async () => {
        await svc.User.create({ account: 'managed', mobile: '1' });
        await svc.outbox.bus.publish(event);
      });
      await svc.outbox.drain();
      assert.deepEqual(svc.publisher.ids(), [event.id]);
    });

    it('without any transaction writes the row first, then publishes', async () => {
      const event = new UserRegistered('solo', '1');
      await svc.outbox.bus.publish(event);
      await svc.outbox.drain();
      assert.deepEqual(svc.publisher.ids(), [event.id]);
      const [row] = await readRows(svc.outbox, [event.id]);
      assert.equal(row?.state, EventState.Published);
    });

    it('runInUnitOfWork commits on success and rolls back on a throw', async () => {
      const kept = new UserRegistered('kept', '1');
      await svc.outbox.runInUnitOfWork(async () => {
        await svc.User.create({ account: 'kept', mobile: '1' });
        await svc.outbox.bus.publish(kept);
      });
      await assert.rejects(
        svc.outbox.runInUnitOfWork(async () => {
          await svc.User.create({ account: 'lost', mobile: '1' });
          await svc.outbox.bus.publish(new UserRegistered('lost', '1'));
          throw new Error('job failed');
        }),
        /job failed/,
      );
      await svc.outbox.drain();
      assert.deepEqual(svc.publisher.ids(), [kept.id]);
      assert.equal(await svc.User.count(), 1);
    });

    it('uses the class name as topic, or a static topic override, and serialises the whole event', async () => {
      const e = new CustomTopicEvent(7);
      await svc.outbox.bus.publish(e);
      await svc.outbox.drain();
      const [m] = svc.publisher.messages;
      assert.equal(m?.topic, 'users/custom');
      assert.equal(m?.eventTypeName, 'CustomTopicEvent');
      assert.deepEqual(JSON.parse(m!.content), { id: e.id, creationTime: e.creationTime, topic: 'users/custom', n: 7 });
      assert.match(e.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.match(e.creationTime, /Z$/);
    });

    describe('invalid events: a clear error and no row', () => {
      const cases: Array<[string, () => object, RegExp]> = [
        ['no topic', () => Object.assign(new UserRegistered('x', '1'), { topic: '' }), /no topic/],
        ['not an object', () => 'hello' as unknown as object, /must be an object/],
        [
          'not JSON-serialisable (circular)',
          () => {
            const e = new UserRegistered('x', '1') as UserRegistered & { self?: unknown };
            e.self = e;
            return e;
          },
          /not JSON-serialisable/,
        ],
        ['a BigInt field', () => Object.assign(new UserRegistered('x', '1'), { big: 10n }), /not JSON-serialisable/],
        ['larger than maxEventBytes', () => Object.assign(new UserRegistered('x', '1'), { blob: 'x'.repeat(5 * 1024 * 1024) }), /maxEventBytes/],
        ['a NUL character in the topic', () => Object.assign(new UserRegistered('x', '1'), { topic: 'a\u0000b' }), /topic contains a NUL character/],
        ['a NUL character in the id', () => Object.assign(new UserRegistered('x', '1'), { id: 'n\u00002' }), /event id contains a NUL character/],
        ['a lone surrogate in the topic', () => Object.assign(new UserRegistered('x', '1'), { topic: 'a\uD800' }), /topic contains a lone UTF-16 surrogate/],
      ];
      for (const [name, make, message] of cases) {
        it(name, async () => {
          await assert.rejects(svc.outbox.bus.publish(make()), (err: unknown) => err instanceof EventValidationError && message.test(err.message));
          const stats = await svc.outbox.stats();
          assert.equal(stats.notPublished + stats.inProgress + stats.published, 0);
        });
      }

      it('a lone surrogate in the pubsub name', async () => {
        await assert.rejects(
          svc.outbox.bus.publish(new UserRegistered('x', '1'), { pubsubName: 'pub\uDC00sub' }),
          (err: unknown) => err instanceof EventValidationError && /pubsubName contains a lone UTF-16 surrogate/.test(err.message),
        );
      });

      it('a topic with an emoji (a surrogate pair) is fine', async () => {
        const event = Object.assign(new UserRegistered('x', '1'), { topic: 'orders-\u{1F680}' });
        await svc.outbox.bus.publish(event);
        await svc.outbox.drain();
        assert.deepEqual(svc.publisher.messages.map((m) => m.topic), ['orders-\u{1F680}']);
      });

      it('inside a request: the handler fails, nothing is written', async () => {
        const app = express();
        app.use(express.json());
        app.use(svc.outbox.middleware());
        app.post('/bad', async (_req, res) => {
          await svc.User.create({ account: 'bad', mobile: '1' });
          await svc.outbox.bus.publish(Object.assign(new UserRegistered('bad', '1'), { topic: undefined }));
          res.json({ ok: true });
        });
        const res = await request(app).post('/bad').send({});
        assert.equal(res.status, 500);
        assert.equal(await svc.User.count(), 0);
      });
    });

    it('accepts an event of several MB', async () => {
      const big = Object.assign(new UserRegistered('big', '1'), { blob: 'é'.repeat(1_500_000) });
      await svc.outbox.bus.publish(big);
      await svc.outbox.drain();
      const [row] = await readRows(svc.outbox, [big.id]);
      assert.equal(JSON.parse(row!.content).blob.length, 1_500_000);
      assert.equal(row?.state, EventState.Published);
    });
  });
}
