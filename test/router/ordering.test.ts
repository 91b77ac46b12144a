import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { QueryTypes } from 'sequelize';
import { createOutbox, createSubscriptionRouter, DropError, type DeliveryContext, type Outbox, type TopicHandler, type TopicOptions } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { readOrdering } from '../../src/http/router/ordering';
import type { InboxStore } from '../../src/ports/inbox-store';
import type { TransactionPort } from '../../src/ports/transactions';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { UserRegistered } from '../support/app';
import { TestClock } from '../processors/helpers';
import { appWith, bulkBody, cloudEvent, daprEnvelope, deliveryHeaders, listen, recordingLogger } from './helpers';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('readOrdering', () => {
  const ce = (fields: Record<string, unknown>) => ({ id: 'x', source: 's', type: 't', specversion: '1.0', ...fields });

  it('reads a key and a decimal sequence, zero-padded or not', () => {
    assert.deepEqual(readOrdering(ce({ partitionkey: 'k', sequence: '42' })), { kind: 'ordered', key: 'k', sequence: 42 });
    assert.deepEqual(readOrdering(ce({ partitionkey: 'k', sequence: '0042' })), { kind: 'ordered', key: 'k', sequence: 42 });
    assert.deepEqual(readOrdering(ce({ partitionkey: 'k', sequence: String(Number.MAX_SAFE_INTEGER) })), { kind: 'ordered', key: 'k', sequence: Number.MAX_SAFE_INTEGER });
  });

  it('takes an event with only one of the two attributes as unordered', () => {
    assert.equal(readOrdering(ce({ partitionkey: 'k' })).kind, 'none');
    assert.equal(readOrdering(ce({ sequence: '1' })).kind, 'none');
    assert.equal(readOrdering(ce({})).kind, 'none');
  });

  it('finds a malformed sequence or key', () => {
    for (const sequence of ['0', '000', '-1', '+1', '1.0', '1e3', ' 1', '', 3, String(Number.MAX_SAFE_INTEGER + 2), '99999999999999999999']) {
      assert.equal(readOrdering(ce({ partitionkey: 'k', sequence })).kind, 'malformed', `sequence ${JSON.stringify(sequence)}`);
    }
    for (const partitionkey of ['', 'k'.repeat(192), 7]) {
      assert.equal(readOrdering(ce({ partitionkey, sequence: '1' })).kind, 'malformed', `partitionkey ${JSON.stringify(partitionkey)}`);
    }
  });
});

for (const kind of testDialects()) {
  describe(`subscription router: ordering keys (${kind})`, () => {
    const route = '/dapr-outbox/pubsub/orders';
    let db: TestDb;
    let outbox: Outbox;
    let clock: TestClock;
    let publisher: RecordingPublisher;
    let logger: ReturnType<typeof recordingLogger>;
    let consumerName: string;
    const closers: Array<() => Promise<void>> = [];
    const gaps: unknown[] = [];
    const lates: unknown[] = [];

    before(async () => {
      db = await createTestDb(kind);
      clock = new TestClock();
      publisher = new RecordingPublisher();
      outbox = createOutbox({ sequelize: db.sequelize, publisher, logger: silentLogger, clock });
      await outbox.migrate();
      outbox.on('orderingGap', (e) => gaps.push(e));
      outbox.on('orderingLate', (e) => lates.push(e));
    });
    after(async () => {
      await outbox.close();
      await db.close();
    });
    beforeEach(() => {
      logger = recordingLogger();
      consumerName = `ord-${randomUUID().slice(0, 8)}`;
      gaps.length = 0;
      lates.length = 0;
    });
    afterEach(async () => {
      while (closers.length) await closers.pop()!();
    });

    /** The topic's inbox consumer name. */
    const consumer = () => `${consumerName}/pubsub/orders`;

    function appFor(handler: TopicHandler, options?: TopicOptions, routerOptions: { orderingGapTimeout?: number; orderingStart?: 'beginning' | 'first-delivered'; inbox?: boolean } = {}) {
      const router = createSubscriptionRouter({ outbox, appApiToken: null, logger, consumer: consumerName, ...routerOptions });
      router.topic('pubsub', 'orders', handler, options);
      return appWith(router);
    }

    /** A keyed event (ids are stable per key and sequence, as redeliveries keep them). */
    const keyed = (key: string, sequence: string | number, fields: Record<string, unknown> = {}) =>
      daprEnvelope({ id: `${consumerName}-${key}-${sequence}`, partitionkey: key, sequence, data: { key, sequence }, ...fields });

    /** A handler that records `key:sequence` of each run. */
    function recorder(runs: string[], behave: (data: { key: string; sequence: string }, ctx: DeliveryContext) => unknown = () => undefined): TopicHandler {
      return async (data: { key: string; sequence: string }, ctx) => {
        runs.push(`${data.key}:${data.sequence}`);
        return behave(data, ctx);
      };
    }

    const post = async (app: ReturnType<typeof appFor>, body: string) => ((await request(app).post(route).set(deliveryHeaders()).send(body)).body as { status: string }).status;

    async function position(key: string): Promise<{ last: number; waiting: number | null } | undefined> {
      const rows = (await db.sequelize.query(`SELECT last_sequence, waiting_since FROM ${outbox.tables.inboxKeys} WHERE consumer = ? AND ordering_key = ?`, {
        replacements: [consumer(), key],
        type: QueryTypes.SELECT,
      })) as Array<{ last_sequence: unknown; waiting_since: unknown }>;
      const r = rows[0];
      return r && { last: Number(r.last_sequence), waiting: r.waiting_since === null ? null : Number(r.waiting_since) };
    }

    it('handles a key in order, moving its position on (structured and binary mode)', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs));
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.deepEqual(await position('a'), { last: 1, waiting: null });
      const binary = await request(app)
        .post(route)
        .set({ 'content-type': 'application/json', 'ce-id': `${consumerName}-a-2`, 'ce-source': 's', 'ce-type': 't', 'ce-specversion': '1.0', 'ce-partitionkey': 'a', 'ce-sequence': '2' })
        .send(JSON.stringify({ key: 'a', sequence: '2' }));
      assert.deepEqual(binary.body, { status: 'SUCCESS' });
      assert.equal(await post(app, keyed('a', '3')), 'SUCCESS');
      assert.deepEqual(runs, ['a:1', 'a:2', 'a:3']);
      assert.deepEqual(await position('a'), { last: 3, waiting: null });
    });

    it('answers SUCCESS to a duplicate without running the handler', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs));
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.deepEqual(runs, ['a:1', 'a:2']);
      assert.deepEqual(lates, []);
      assert.deepEqual(await position('a'), { last: 2, waiting: null });
    });

    it('answers RETRY to an event ahead of its turn without running it, and handles it once the missing one came', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs));
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      assert.deepEqual(await position('a'), { last: 0, waiting: clock.now() });
      assert.equal(await post(app, keyed('a', '3')), 'RETRY');
      assert.deepEqual(runs, []);
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.deepEqual(await position('a'), { last: 1, waiting: null });
      assert.equal(await post(app, keyed('a', '3')), 'RETRY');
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '3')), 'SUCCESS');
      assert.deepEqual(runs, ['a:1', 'a:2', 'a:3']);
    });

    for (const replicas of [1, 2])
    it(`makes the next event of a key wait for the running one to commit, instead of answering RETRY (${replicas === 1 ? 'one process: in memory' : 'two replicas: on the row lock'})`, async () => {
      const runs: string[] = [];
      let started!: () => void;
      const firstStarted = new Promise<void>((resolve) => (started = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const handler = recorder(runs, async (data) => {
        if (data.sequence === '1') {
          started();
          await released;
        }
      });
      const server = await listen(appFor(handler));
      closers.push(server.close);
      // A second replica: its own router, so the turn is taken on the key's row lock.
      const other = replicas === 1 ? server : await listen(appFor(handler));
      if (other !== server) closers.push(other.close);
      const first = request(server.url).post(route).set(deliveryHeaders()).send(keyed('a', '1'));
      const firstDone = first.then((r) => r.body as { status: string });
      await firstStarted;
      const secondDone = request(other.url).post(route).set(deliveryHeaders()).send(keyed('a', '2')).then((r) => r.body as { status: string });
      // Give the second delivery time to reach the key's lock before the first commits.
      await sleep(300);
      assert.deepEqual(runs, ['a:1']);
      release();
      assert.deepEqual(await firstDone, { status: 'SUCCESS' });
      assert.deepEqual(await secondDone, { status: 'SUCCESS' });
      assert.deepEqual(runs, ['a:1', 'a:2']);
      assert.deepEqual(await position('a'), { last: 2, waiting: null });
    });

    it('runs the handler once when one event is delivered twice at the same time', async () => {
      const runs: string[] = [];
      let started!: () => void;
      const firstStarted = new Promise<void>((resolve) => (started = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const app = appFor(
        recorder(runs, async () => {
          started();
          await released;
        }),
      );
      const server = await listen(app);
      closers.push(server.close);
      const send = () => request(server.url).post(route).set(deliveryHeaders()).send(keyed('a', '1')).then((r) => r.body as { status: string });
      const first = send();
      await firstStarted;
      const second = send();
      await sleep(300);
      release();
      assert.deepEqual(await Promise.all([first, second]), [{ status: 'SUCCESS' }, { status: 'SUCCESS' }]);
      assert.deepEqual(runs, ['a:1']);
    });

    it('commits the events a keyed handler publishes with it, and discards those of a head that failed', async () => {
      const account = (sequence: string) => `${consumerName}-${sequence}`;
      let failing = true;
      const app = appFor(async (data: { sequence: string }) => {
        await outbox.bus.publish(new UserRegistered(account(data.sequence), '1'));
        if (data.sequence === '1' && failing) throw new Error('after publishing');
      });
      assert.equal(await post(app, keyed('a', '1')), 'RETRY');
      assert.deepEqual(await position('a'), { last: 0, waiting: clock.now() });
      failing = false;
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      await outbox.drain();
      const accounts = publisher.messages.map((m) => (JSON.parse(m.content) as { account: string }).account).filter((a) => a.startsWith(consumerName));
      assert.deepEqual(accounts.sort(), [account('1'), account('2')]);
    });

    it('holds a key whose head keeps failing (also past the gap timeout) while another key flows', async () => {
      const runs: string[] = [];
      let failing = true;
      const app = appFor(
        recorder(runs, (data) => {
          if (data.key === 'a' && data.sequence === '1' && failing) throw new Error('not yet');
        }),
        undefined,
        { orderingGapTimeout: 0.2 },
      );
      assert.equal(await post(app, keyed('a', '1')), 'RETRY');
      assert.deepEqual(await position('a'), { last: 0, waiting: clock.now() });
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      assert.equal(await post(app, keyed('b', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('b', '2')), 'SUCCESS');
      // The sidecar retries the head: each failure starts the wait again.
      clock.advance(0.15);
      assert.equal(await post(app, keyed('a', '1')), 'RETRY');
      clock.advance(0.15);
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      assert.deepEqual(gaps, []);
      failing = false;
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.deepEqual(
        runs.filter((r) => r.startsWith('a:')),
        ['a:1', 'a:1', 'a:1', 'a:2'],
      );
      assert.deepEqual(
        runs.filter((r) => r.startsWith('b:')),
        ['b:1', 'b:2'],
      );
      assert.deepEqual(await position('a'), { last: 2, waiting: null });
    });

    it('moves the key on when the handler drops the head, and drops a late redelivery of it without running it', async () => {
      const runs: string[] = [];
      const app = appFor(
        recorder(runs, (data) => {
          if (data.sequence === '1') throw new DropError('never');
        }),
      );
      assert.equal(await post(app, keyed('a', '1')), 'DROP');
      assert.deepEqual(await position('a'), { last: 1, waiting: null });
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '1')), 'DROP');
      assert.deepEqual(runs, ['a:1', 'a:2']);
    });

    it('moves the key on when the validation hook rejects the head, but only at its turn', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs), { validate: (data) => (data as { sequence: string }).sequence !== '2' });
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '2')), 'DROP');
      assert.equal(await post(app, keyed('a', '3')), 'SUCCESS');
      assert.deepEqual(runs, ['a:1', 'a:3']);
      assert.deepEqual(await position('a'), { last: 3, waiting: null });
    });

    it('skips a missing sequence once the gap timeout ran out, then drops it when it arrives late', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs), { orderingGapTimeout: 0.2 });
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '4')), 'RETRY');
      clock.advance(0.1);
      assert.equal(await post(app, keyed('a', '4')), 'RETRY');
      clock.advance(0.1);
      assert.equal(await post(app, keyed('a', '4')), 'SUCCESS');
      assert.deepEqual(gaps, [{ consumer: consumer(), key: 'a', from: 2, to: 3 }]);
      assert.ok(logger.warnings().some((w) => /skipped/.test(w)));
      assert.deepEqual(await position('a'), { last: 4, waiting: null });
      assert.equal(await post(app, keyed('a', '3')), 'DROP');
      assert.equal(await post(app, keyed('a', '5')), 'SUCCESS');
      assert.deepEqual(runs, ['a:1', 'a:4', 'a:5']);
      assert.deepEqual(lates, [{ consumer: consumer(), key: 'a', sequence: 3, id: `${consumerName}-a-3` }]);
      const late = logger.entries.find((e) => e.level === 'warn' && /after its key moved past it/.test(e.message));
      assert.equal(late?.context?.consumer, consumer());
      assert.equal(late?.context?.key, 'a');
      assert.equal(late?.context?.sequence, 3);
      assert.equal(late?.context?.id, `${consumerName}-a-3`);
    });

    it("uses the router's orderingGapTimeout for a topic without its own", async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs), undefined, { orderingGapTimeout: 5 });
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      clock.advance(4);
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      clock.advance(1);
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.deepEqual(runs, ['a:2']);
    });

    it('orderingGapTimeout Infinity: a key never skips', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs), { orderingGapTimeout: Infinity });
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      clock.advance(365 * 86400);
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      assert.deepEqual(runs, []);
    });

    it("orderingStart 'first-delivered': a key the consumer never handled starts at its first delivery; one before it is then late", async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs), undefined, { orderingStart: 'first-delivered' });
      assert.equal(await post(app, keyed('a', '57')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '59')), 'RETRY', 'after the start the order holds');
      assert.equal(await post(app, keyed('a', '58')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '59')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '12')), 'DROP', 'before the start: late');
      assert.deepEqual(runs, ['a:57', 'a:58', 'a:59']);
      assert.deepEqual(lates.map((l) => (l as { sequence: number }).sequence), [12]);
      // A topic's own option wins over the router's.
      const strict = appFor(recorder(runs), { orderingStart: 'beginning' }, { orderingStart: 'first-delivered' });
      assert.equal(await post(strict, keyed('b', '3')), 'RETRY');
    });

    it('handles an event whose ordering attributes cannot be read in no order, rather than dropping it; one warning', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs));
      assert.equal(await post(app, keyed('a', '0')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '-1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', 2)), 'SUCCESS');
      assert.equal(await post(app, keyed('k'.repeat(192), '1')), 'SUCCESS');
      assert.deepEqual(runs, ['a:0', 'a:-1', 'a:2', `${'k'.repeat(192)}:1`]);
      assert.equal(logger.warnings().filter((w) => /ordering attributes cannot be read/.test(w)).length, 1);
      assert.equal(await position('a'), undefined, 'no key position for them');
      // Still exactly once: the inbox knows them.
      assert.equal(await post(app, keyed('a', '-1')), 'SUCCESS');
      assert.equal(runs.length, 4);
    });

    it('answers each keyed entry of a bulk delivery by the rules, in the order they came', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs), { bulk: true });
      const entry = (entryId: string, key: string, sequence: string) => ({ entryId, event: cloudEvent({ id: `${consumerName}-${key}-${sequence}`, partitionkey: key, sequence, data: { key, sequence } }) });
      const plain = { entryId: 'p', event: cloudEvent({ id: `${consumerName}-plain`, data: { key: 'plain', sequence: '-' } }) };
      const bad = { entryId: 'bad', event: cloudEvent({ id: `${consumerName}-bad`, partitionkey: 'a', sequence: 'x', data: { key: 'a', sequence: 'x' } }) };
      const first = await request(app)
        .post(route)
        .set('content-type', 'application/json')
        .send(bulkBody([entry('e2', 'a', '2'), entry('e1', 'a', '1'), plain, entry('e3', 'a', '3'), bad]));
      assert.deepEqual(first.body, {
        statuses: [
          { entryId: 'e2', status: 'RETRY' },
          { entryId: 'e1', status: 'SUCCESS' },
          { entryId: 'p', status: 'SUCCESS' },
          { entryId: 'e3', status: 'RETRY' },
          { entryId: 'bad', status: 'SUCCESS' },
        ],
      });
      const again = await request(app)
        .post(route)
        .set('content-type', 'application/json')
        .send(bulkBody([entry('e2', 'a', '2'), entry('e3', 'a', '3'), entry('e1', 'a', '1')]));
      assert.deepEqual(again.body, {
        statuses: [
          { entryId: 'e2', status: 'SUCCESS' },
          { entryId: 'e3', status: 'SUCCESS' },
          { entryId: 'e1', status: 'SUCCESS' },
        ],
      });
      assert.deepEqual(
        runs.filter((r) => r.startsWith('a:')),
        ['a:x', 'a:1', 'a:2', 'a:3'],
        'the entry with an unreadable sequence is handled, in no order',
      );
      assert.deepEqual(
        runs.filter((r) => r.startsWith('plain:')),
        ['plain:-'],
      );
    });

    it('leaves unkeyed deliveries and routes without the inbox as they were', async () => {
      const runs: string[] = [];
      const app = appFor(recorder(runs));
      const body = daprEnvelope({ id: `${consumerName}-plain`, partitionkey: 'a', data: { key: 'plain', sequence: '-' } });
      assert.equal(await post(app, body), 'SUCCESS');
      assert.equal(await post(app, body), 'SUCCESS');
      assert.deepEqual(runs, ['plain:-']);
      assert.equal(await position('a'), undefined);

      const noInbox: string[] = [];
      const off = appFor(recorder(noInbox), undefined, { inbox: false });
      assert.equal(await post(off, keyed('b', '2')), 'SUCCESS');
      assert.equal(await post(off, keyed('b', '1')), 'SUCCESS');
      assert.equal(await post(off, keyed('b', '1')), 'SUCCESS');
      assert.equal(await post(off, keyed('b', '01')), 'SUCCESS');
      assert.deepEqual(noInbox, ['b:2', 'b:1', 'b:1', 'b:01']);
      assert.equal(await position('b'), undefined);
    });

    it('records a failed head on its key in a transaction of its own when the transactions have no savepoints', async () => {
      const runs: string[] = [];
      const t = outbox.transactions;
      // The outbox's transactions without savepoint().
      const transactions: TransactionPort = {
        oneWriter: t.oneWriter,
        concurrency: t.concurrency,
        begin: () => t.begin(),
        commit: (tx) => t.commit(tx),
        rollback: (tx) => t.rollback(tx),
        run: (fn) => t.run(fn),
        bind: (tx, fn) => t.bind(tx, fn),
        detached: (fn) => t.detached(fn),
        current: () => t.current(),
        afterCommit: (tx, fn) => t.afterCommit(tx, fn),
      };
      let failing = true;
      const router = createSubscriptionRouter({ outbox: { inbox: outbox.inbox, transactions, clock }, appApiToken: null, logger, consumer: consumerName, orderingGapTimeout: 0.2 });
      router.topic(
        'pubsub',
        'orders',
        recorder(runs, (data) => {
          if (data.key === 'a' && failing) throw new Error('not yet');
          if (data.key === 'b' && data.sequence === '2') return 'DROP';
        }),
      );
      const app = appWith(router);
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      clock.advance(0.3);
      // The gap timed out: 2 becomes the head, fails, and keeps the skip with a new wait.
      assert.equal(await post(app, keyed('a', '2')), 'RETRY');
      assert.deepEqual(await position('a'), { last: 1, waiting: clock.now() });
      failing = false;
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.equal(await post(app, keyed('b', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('b', '2')), 'DROP');
      assert.deepEqual(await position('b'), { last: 2, waiting: null });
      assert.equal(await post(app, keyed('b', '3')), 'SUCCESS');
      assert.deepEqual(runs, ['a:2', 'a:2', 'b:1', 'b:2', 'b:3']);
    });

    it('handles keyed deliveries in arrival order, with one warning, when the inbox store keeps no key positions', async () => {
      const runs: string[] = [];
      const store = outbox.inbox!;
      // The same inbox, without `keys`.
      const inbox: InboxStore = {
        record: (c, id, tx, now) => store.record(c, id, tx, now),
        deleteOlderThan: (before, limit) => store.deleteOlderThan(before, limit),
      };
      const router = createSubscriptionRouter({ outbox: { inbox, transactions: outbox.transactions, clock }, appApiToken: null, logger, consumer: consumerName });
      router.topic('pubsub', 'orders', recorder(runs));
      const app = appWith(router);
      assert.equal(await post(app, keyed('a', '2')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.equal(await post(app, keyed('a', '1')), 'SUCCESS');
      assert.deepEqual(runs, ['a:2', 'a:1']);
      assert.equal(logger.warnings().filter((w) => /keeps no ordering key positions/.test(w)).length, 1);
      assert.equal(await position('a'), undefined);
    });

    it('rejects a bad orderingGapTimeout on the router and on a topic', () => {
      assert.throws(() => createSubscriptionRouter({ outbox, orderingGapTimeout: 0 }), /orderingGapTimeout/);
      assert.throws(() => createSubscriptionRouter({ outbox, orderingGapTimeout: Number.NaN }), /orderingGapTimeout/);
      const router = createSubscriptionRouter({ outbox, appApiToken: null });
      assert.throws(() => router.topic('pubsub', 'orders', () => {}, { orderingGapTimeout: -1 }), /orderingGapTimeout/);
      assert.throws(() => router.topic('pubsub', 'orders', () => {}, { orderingGapTimeout: '5' as unknown as number }), /orderingGapTimeout/);
      assert.throws(() => createSubscriptionRouter({ outbox, orderingStart: 'latest' as 'beginning' }), /orderingStart/);
      assert.throws(() => router.topic('pubsub', 'orders', () => {}, { orderingStart: '' as 'beginning' }), /orderingStart/);
    });
  });
}
