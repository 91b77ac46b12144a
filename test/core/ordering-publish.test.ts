import assert from 'node:assert/strict';
import { IntegrationEvent } from '../../src';
import { EventState } from '../../src/extend';
import type { OutboxMessage } from '../../src/ports/publisher';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { drain, makeOutbox, type Harness } from '../processors/helpers';

/** An event of one key: `orderingKey` is a getter, so it is not part of the message body. */
class Step extends IntegrationEvent {
  constructor(
    public key: string,
    public n: number,
    topic = 'steps',
  ) {
    super({ topic });
  }
  get orderingKey(): string {
    return this.key;
  }
}

/**
 * Records the publish order, and checks that no two events of one key are ever in flight at
 * once. `fail(m)` makes a message fail while it returns true.
 */
class KeyProbe extends RecordingPublisher {
  private readonly inFlight = new Map<string, number>();
  overlaps = 0;
  /** Each publish waits a random while up to this, plus `fixedDelayMs`. */
  delayMs = 0;
  fixedDelayMs = 0;
  fail: (m: OutboxMessage) => boolean = () => false;

  override async publish(message: OutboxMessage): Promise<void> {
    const key = message.orderingKey ? `${message.topic}/${message.orderingKey}` : null;
    if (key) {
      const n = (this.inFlight.get(key) ?? 0) + 1;
      this.inFlight.set(key, n);
      if (n > 1) this.overlaps += 1;
    }
    try {
      const wait = this.fixedDelayMs + (this.delayMs > 0 ? Math.random() * this.delayMs : 0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (this.fail(message)) throw new Error(`refused ${message.id}`);
      await super.publish(message);
    } finally {
      if (key) this.inFlight.set(key, this.inFlight.get(key)! - 1);
    }
  }

  /** The sequence numbers published for one key, in publish order. */
  sequencesOf(key: string, topic = 'steps'): number[] {
    return this.messages.filter((m) => m.orderingKey === key && m.topic === topic).map((m) => Number(m.sequence));
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

for (const kind of testDialects()) {
  describe(`ordering keys: the publish side (${kind})`, function () {
    this.timeout(60_000);
    let db: TestDb;
    let h: Harness;
    let probe: KeyProbe;

    beforeEach(async () => {
      db = await createTestDb(kind);
      probe = new KeyProbe();
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    it('numbers each key in commit order, per pubsub and topic; unkeyed rows get no number', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe });
      const { outbox } = h;
      const first = [new Step('a', 1), new Step('a', 2), new Step('b', 1), new Step('a', 3, 'other')];
      await outbox.runInUnitOfWork(async () => {
        for (const e of first) await outbox.bus.publish(e);
        await outbox.bus.publish(new Step('ignored', 0), { orderingKey: 'a' });
      });
      const plain = new Step('x', 0);
      Object.defineProperty(plain, 'orderingKey', { value: undefined });
      await outbox.bus.publish(plain);
      await outbox.bus.publish(new Step('a', 4));
      await outbox.drain();
      const rows = await h.store.find([...first.map((e) => e.id), plain.id]);
      const seq = new Map(rows.map((r) => [r.id, r.sequence]));
      assert.deepEqual(first.map((e) => seq.get(e.id)), [1, 2, 1, 1]);
      assert.equal(seq.get(plain.id), null);
      assert.deepEqual(probe.sequencesOf('a'), [1, 2, 3, 4]);
      assert.deepEqual(probe.sequencesOf('b'), [1]);
      assert.deepEqual(probe.sequencesOf('a', 'other'), [1]);
      assert.equal(probe.bulkCalls.length, 0, 'keyed events never go in bulk');
      assert.equal(probe.overlaps, 0);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 7, publishedFailed: 0, terminalFailed: 0 });
    });

    it('a rolled-back write gives its numbers back: no gap', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe });
      const { outbox } = h;
      await outbox.bus.publish(new Step('k', 1));
      await assert.rejects(
        outbox.runInUnitOfWork(async () => {
          await outbox.bus.publish(new Step('k', 2));
          throw new Error('handler failed');
        }),
        /handler failed/,
      );
      await outbox.bus.publish(new Step('k', 3));
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('k'), [1, 2]);
      assert.deepEqual(probe.messages.map((m) => JSON.parse(m.content).n), [1, 3]);
    });

    it('8 concurrent writers on 10 keys: every key numbered 1..n once, published in sequence, one at a time', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe });
      const { outbox } = h;
      probe.delayMs = 2;
      const keys = range(10).map((i) => `order-${i}`);
      const perWriter = kind === 'sqlite' ? 10 : 15;
      const written = new Map<string, number>(keys.map((k) => [k, 0]));
      await Promise.all(
        range(8).map(async (w) => {
          for (let i = 0; i < perWriter; i++) {
            // Each unit of work writes two keys, in an order that differs between writers.
            const pair = [keys[(w + i) % 10]!, keys[(w * 3 + i * 7) % 10]!];
            await outbox.runInUnitOfWork(async () => {
              for (const k of pair) {
                written.set(k, written.get(k)! + 1);
                await outbox.bus.publish(new Step(k, i));
              }
            });
          }
        }),
      );
      await outbox.drain();
      await drain(() => outbox.runPass('retry-by-database'));
      await outbox.drain();
      for (const k of keys) assert.deepEqual(probe.sequencesOf(k), range(written.get(k)!), k);
      assert.equal(probe.overlaps, 0, 'never two events of one key in flight');
      assert.equal(h.errors.length, 0, h.errors.map((e) => e.message).join('; '));
    });

    it('a failing event holds back its own key only, then the key goes on in order', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe, localRetryTimes: 0, minimumRetryInterval: 1, maximumRetryInterval: 1 });
      const { outbox, clock } = h;
      let broken = true;
      probe.fail = (m) => broken && m.orderingKey === 'stuck' && m.sequence === 2;
      await outbox.runInUnitOfWork(async () => {
        for (let i = 1; i <= 4; i++) await outbox.bus.publish(new Step('stuck', i));
        for (let i = 1; i <= 4; i++) await outbox.bus.publish(new Step('free', i));
        await outbox.bus.publish({ id: 'plain-1', topic: 'steps' });
      });
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('stuck'), [1]);
      assert.deepEqual(probe.sequencesOf('free'), [1, 2, 3, 4]);
      assert.ok(probe.ids().includes('plain-1'));
      const stats = await outbox.stats();
      assert.equal(stats.publishedFailed, 1);
      assert.equal(stats.notPublished, 2, 'the two after the failed one wait');

      clock.advance(5);
      assert.equal(await outbox.runPass('retry-by-database'), 1, 'only the head of the key is due');
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('stuck'), [1]);

      broken = false;
      clock.advance(5);
      await drain(() => outbox.runPass('retry-by-database'));
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('stuck'), [1, 2, 3, 4]);
      assert.equal(probe.overlaps, 0);
    });

    it('a terminal failure holds its key until republished; a deleted one lets the key go on', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe, localRetryTimes: 0, maxRetryTimes: 0 });
      const { outbox, store } = h;
      let broken = true;
      probe.fail = (m) => broken && m.orderingKey !== null && m.sequence === 1;
      const r1 = new Step('r', 1);
      const d1 = new Step('d', 1);
      await outbox.runInUnitOfWork(async () => {
        await outbox.bus.publish(r1);
        await outbox.bus.publish(new Step('r', 2));
        await outbox.bus.publish(d1);
        await outbox.bus.publish(new Step('d', 2));
      });
      await outbox.drain();
      assert.equal((await outbox.stats()).terminalFailed, 2);
      assert.equal(await outbox.runPass('retry-by-database'), 0, 'nothing of either key is due');

      broken = false;
      assert.equal(await outbox.republish([r1.id]), 1);
      await drain(() => outbox.runPass('retry-by-database'));
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('r'), [1, 2]);

      assert.equal(await store.deleteTerminalFailed({ ids: [d1.id] }), 1);
      const [next] = await findKeyed(h, "d", 2);
      assert.equal(next!.state, EventState.NotPublished);
      assert.notEqual(next!.nextAttemptTime, null, 'the next event of the key is due');
      await drain(() => outbox.runPass('retry-by-database'));
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('d'), [2]);
    });

    for (const relayUnderRowLocks of [false, true]) {
    it(`the relay carries on a key whose committer died, in order${relayUnderRowLocks ? ' (relay under row locks)' : ''}`, async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe, relayUnderRowLocks });
      const { outbox, store, clock } = h;
      // Written as a committer that died before publishing anything: rows leased to it.
      const messages = range(5).map((n) => ({ id: `dead-${n}`, topic: 'steps', pubsubName: 'pubsub', eventTypeName: 'Step', content: `{"n":${n}}`, creationTime: clock.now(), orderingKey: 'k' }));
      await store.insert(messages, null, 'dead-process', clock.now() + 30_000, clock.now());
      assert.deepEqual(messages.map((m) => [(m as OutboxMessage).sequence, (m as OutboxMessage).waiting]), [[1, false], [2, true], [3, true], [4, true], [5, true]]);
      assert.equal(await outbox.runPass('retry-by-database'), 0, 'leased to the committer');
      clock.advance(31);
      // With leases the relay takes the head, and the dispatcher carries the key on from there;
      // under row locks (databases with SKIP LOCKED) one pass takes the key's events one by one.
      const locked = relayUnderRowLocks && kind !== 'sqlite';
      assert.equal(await outbox.runPass('retry-by-database'), locked ? 5 : 1);
      await drain(() => outbox.runPass('retry-by-database'));
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('k'), [1, 2, 3, 4, 5]);
      assert.deepEqual(probe.ids(), ['dead-1', 'dead-2', 'dead-3', 'dead-4', 'dead-5']);
      assert.equal((await outbox.stats()).published, 5);
    });
    }

    it("stop() hands a key's backlog back to the relay instead of working through it", async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe });
      const { outbox } = h;
      probe.fixedDelayMs = 100;
      const steps = range(30).map((n) => new Step('long', n));
      await outbox.runInUnitOfWork(async () => {
        for (const e of steps) await outbox.bus.publish(e);
      });
      await outbox.stop();
      assert.deepEqual(probe.sequencesOf('long'), [1], 'the head in flight went out; the rest was left');
      const [second] = await h.store.find([steps[1]!.id]);
      assert.equal(second!.lockOwner, null, 'the next one is no longer held by the stopped process');
      assert.equal(second!.timesSent, 0, 'its attempt was never made');
      assert.notEqual(second!.nextAttemptTime, null, 'and it is due');

      const other = new KeyProbe();
      const replica = await makeOutbox(db.sequelize, { publisher: other });
      try {
        await drain(() => replica.outbox.runPass('retry-by-database'));
        await replica.outbox.drain();
        assert.deepEqual(other.sequencesOf('long'), range(30).slice(1));
      } finally {
        await replica.outbox.close();
      }
    });

    if (kind === 'mysql') {
      it('on a server without INSERT ... RETURNING (MySQL): the numbers are read back after the upsert', async () => {
        h = await makeOutbox(db.sequelize, { publisher: probe });
        (h.store as unknown as { insertReturning: () => Promise<boolean> }).insertReturning = async () => false;
        const { outbox } = h;
        await outbox.runInUnitOfWork(async () => {
          for (const n of [1, 2, 3]) await outbox.bus.publish(new Step('m', n));
          await outbox.bus.publish(new Step('o', 1));
        });
        await outbox.bus.publish(new Step('m', 4));
        await outbox.drain();
        assert.deepEqual(probe.sequencesOf('m'), [1, 2, 3, 4]);
        assert.deepEqual(probe.sequencesOf('o'), [1]);
      });
    }

    it('takes a numeric ordering key as its decimal text', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe });
      const { outbox } = h;
      await outbox.bus.publish({ id: 'n-1', topic: 'steps' }, { orderingKey: 42 });
      await outbox.bus.publish({ id: 'n-2', topic: 'steps' }, { orderingKey: 42n });
      await outbox.drain();
      assert.deepEqual(probe.sequencesOf('42'), [1, 2]);
    });

    it('refuses a bad ordering key before writing anything', async () => {
      h = await makeOutbox(db.sequelize, { publisher: probe });
      const { outbox } = h;
      await assert.rejects(outbox.bus.publish(new Step('', 1)), /ordering key must be a string of 1 to 191/);
      await assert.rejects(outbox.bus.publish(new Step('k'.repeat(192), 1)), /ordering key must be a string of 1 to 191/);
      await assert.rejects(outbox.bus.publish({ id: 'x', topic: 't', orderingKey: { id: 5 } }), /ordering key must be a string/);
      await assert.rejects(outbox.bus.publish({ id: 'y', topic: 't', orderingKey: Number.NaN }), /ordering key must be a string/);
      await assert.rejects(outbox.bus.publish(new Step('bad\u0000key', 1)), /ordering key contains a NUL/);
      assert.equal((await outbox.stats()).notPublished, 0);
    });
  });
}

async function findKeyed(h: Harness, key: string, sequence: number) {
  const [rows] = await h.store.sequelize.query(`SELECT event_id FROM ${h.outbox.tables.outbox} WHERE ordering_key = ? AND key_sequence = ?`, { replacements: [key, sequence] });
  return h.store.find((rows as Array<{ event_id: string }>).map((r) => r.event_id));
}
