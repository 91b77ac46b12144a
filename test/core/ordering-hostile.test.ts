import assert from 'node:assert/strict';
import { IntegrationEvent } from '../../src';
import type { OutboxMessage } from '../../src/ports/publisher';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { makeOutbox, type Harness } from '../processors/helpers';

class Step extends IntegrationEvent {
  constructor(public key: string, public n: number, topic = 'steps') {
    super({ topic });
  }
  get orderingKey(): string {
    return this.key;
  }
}

/** The key is a plain field: it is part of the message body too. */
class FieldKeyed extends IntegrationEvent {
  constructor(public orderingKey: string | null | undefined, public n: number) {
    super({ topic: 'field' });
  }
}

class Plain extends IntegrationEvent {
  constructor(public n: number) {
    super({ topic: 'plain' });
  }
}

for (const kind of testDialects()) {
  describe(`ordering keys, as users write them (${kind})`, function () {
    this.timeout(120_000);
    let db: TestDb;
    let h: Harness;
    let pub: RecordingPublisher;

    beforeEach(async () => {
      db = await createTestDb(kind);
      pub = new RecordingPublisher();
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    const seqs = (pred: (m: OutboxMessage) => boolean) => pub.messages.filter(pred).map((m) => Number(m.sequence));

    it('keeps keys apart that differ only by case, trailing spaces, accents or width', async () => {
      h = await makeOutbox(db.sequelize, { publisher: pub });
      const keys = ['A', 'a', 'a ', 'a  ', ' a', 'ä', 'a\u0308', 'ａ', 'ss', 'ß', 'a%', 'a_', 'a/b', 'a\\b', "a'b", '😀', '😀😀', 'k'.repeat(191), `${'😀'.repeat(95)}x`];
      // Two events per key, in one unit of work, then one more per key in another.
      await h.outbox.runInUnitOfWork(async () => {
        for (const k of keys) await h.outbox.bus.publish(new Step(k, 1));
        for (const k of keys) await h.outbox.bus.publish(new Step(k, 2));
      });
      for (const k of keys) await h.outbox.bus.publish(new Step(k, 3));
      await h.outbox.drain();
      for (const k of keys) {
        assert.deepEqual(seqs((m) => m.orderingKey === k), [1, 2, 3], `key ${JSON.stringify(k)}`);
        assert.deepEqual(pub.messages.filter((m) => m.orderingKey === k).map((m) => JSON.parse(m.content).n), [1, 2, 3], `key ${JSON.stringify(k)}`);
      }
      assert.deepEqual(await h.outbox.stats(), { notPublished: 0, inProgress: 0, published: keys.length * 3, publishedFailed: 0, terminalFailed: 0 });
    });

    it('takes a field orderingKey, and null or undefined as no key', async () => {
      h = await makeOutbox(db.sequelize, { publisher: pub });
      await h.outbox.bus.publish(new FieldKeyed('f', 1));
      await h.outbox.bus.publish(new FieldKeyed(null, 2));
      await h.outbox.bus.publish(new FieldKeyed(undefined, 3));
      await h.outbox.bus.publish(new FieldKeyed('f', 4));
      await h.outbox.drain();
      const byN = new Map(pub.messages.map((m) => [JSON.parse(m.content).n as number, m]));
      assert.equal(byN.get(1)!.sequence, 1);
      assert.equal(byN.get(2)!.orderingKey, null);
      assert.equal(byN.get(3)!.orderingKey, null);
      assert.equal(byN.get(4)!.sequence, 2);
    });

    it('mixes keyed and unkeyed events, two topics and two pubsubs, in publishAll and nested transactions', async () => {
      h = await makeOutbox(db.sequelize, { publisher: pub });
      const { outbox } = h;
      await outbox.runInUnitOfWork(async () => {
        await outbox.bus.publishAll([new Step('k', 1), new Plain(1), new Step('k', 2, 'other'), new Step('k', 3), new Plain(2)]);
        await outbox.bus.publish(new Step('k', 4), { pubsubName: 'second' });
        await outbox.bus.publish(new Plain(3), { orderingKey: 'k' });
      });
      await db.sequelize.transaction(async (t) => {
        await outbox.bus.publish(new Step('k', 5), { transaction: t });
        await outbox.bus.publishAll([new Step('k', 6), new Plain(4)], { transaction: t });
      });
      await assert.rejects(
        db.sequelize.transaction(async (t) => {
          await outbox.bus.publish(new Step('k', 99), { transaction: t });
          throw new Error('rolled back');
        }),
        /rolled back/,
      );
      await outbox.bus.publish(new Step('k', 7));
      await outbox.drain();
      const ns = (topic: string, pubsub = 'pubsub') => pub.messages.filter((m) => m.topic === topic && m.pubsubName === pubsub && m.orderingKey === 'k').map((m) => [Number(m.sequence), JSON.parse(m.content).n]);
      const pubsub = pub.messages.find((m) => m.topic === 'steps' && m.pubsubName !== 'second')!.pubsubName;
      assert.deepEqual(ns('steps', pubsub), [[1, 1], [2, 3], [3, 5], [4, 6], [5, 7]]);
      assert.deepEqual(ns('other', pubsub), [[1, 2]]);
      assert.deepEqual(ns('steps', 'second'), [[1, 4]]);
      assert.deepEqual(ns('plain', pubsub), [[1, 3]]);
      assert.equal(pub.messages.filter((m) => m.topic === 'plain' && m.orderingKey === null).length, 3);
    });

    it('publishes a keyed event written in a nested transaction (a savepoint) once the outer one commits', async () => {
      h = await makeOutbox(db.sequelize, { publisher: pub });
      const { outbox } = h;
      await db.sequelize.transaction(async (outer) => {
        await db.sequelize.transaction({ transaction: outer }, async (inner) => {
          await outbox.bus.publish(new Step('nested', 1), { transaction: inner });
        });
        await outbox.bus.publish(new Step('nested', 2), { transaction: outer });
      });
      await outbox.drain();
      assert.deepEqual(seqs((m) => m.orderingKey === 'nested'), [1, 2]);
      assert.equal(h.logger.at('warn').length, 0, JSON.stringify(h.logger.at('warn')));
    });

    it('publishes 300 events of one key from one unit of work, and 2000 keys from another, each key in order', async () => {
      h = await makeOutbox(db.sequelize, { publisher: pub });
      const { outbox } = h;
      await outbox.runInUnitOfWork(async () => {
        for (let i = 1; i <= 300; i++) await outbox.bus.publish(new Step('one', i));
      });
      await outbox.runInUnitOfWork(async () => {
        await outbox.bus.publishAll(Array.from({ length: 2000 }, (_, i) => new Step(`key-${i}`, 1)));
        await outbox.bus.publishAll(Array.from({ length: 2000 }, (_, i) => new Step(`key-${i}`, 2)));
      });
      await outbox.drain();
      assert.deepEqual(seqs((m) => m.orderingKey === 'one'), Array.from({ length: 300 }, (_, i) => i + 1));
      assert.deepEqual(pub.messages.filter((m) => m.orderingKey === 'one').map((m) => JSON.parse(m.content).n), Array.from({ length: 300 }, (_, i) => i + 1));
      for (let i = 0; i < 2000; i += 97) assert.deepEqual(seqs((m) => m.orderingKey === `key-${i}`), [1, 2]);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 4300, publishedFailed: 0, terminalFailed: 0 });
    });

    it('publishes keyed events of 2 MB in order', async () => {
      h = await makeOutbox(db.sequelize, { publisher: pub, maxEventBytes: 4 * 1024 * 1024 });
      const big = 'x'.repeat(2 * 1024 * 1024);
      await h.outbox.runInUnitOfWork(async () => {
        for (let i = 1; i <= 3; i++) await h.outbox.bus.publish(Object.assign(new Step('big', i), { big }));
      });
      await h.outbox.drain();
      assert.deepEqual(seqs((m) => m.orderingKey === 'big'), [1, 2, 3]);
    });
  });
}
