import assert from 'node:assert/strict';
import { DaprPublisher } from '../../src';
import { EventState } from '../../src/extend';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { drain, makeOutbox, seedRows, type Harness } from './helpers';
import { readRows } from '../support/rows';

/** Accepted publishes per event id, as the sidecar saw them. */
function acceptedById(emu: DaprEmulator): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of emu.publishes) {
    if (!p.accepted) continue;
    const id = p.entryId ?? (p.envelope?.id as string | undefined);
    if (id) out.set(id, (out.get(id) ?? 0) + 1);
  }
  return out;
}

for (const kind of testDialects()) {
  describe(`processors: retry through the Dapr sidecar emulator (${kind})`, () => {
    let db: TestDb;
    let emu: DaprEmulator;
    let h: Harness;

    beforeEach(async () => {
      db = await createTestDb(kind);
      // The app may publish to OrderPlaced only: any other topic is answered 403.
      emu = await DaprEmulator.start({ appId: 'orders', scopes: { publishingScopes: { orders: ['OrderPlaced'] } } });
    });
    afterEach(async () => {
      await h?.outbox.close();
      await emu.stop();
      await db.close();
    });

    it('fails poison rows for good (unparsable content, a topic the sidecar forbids, an unknown pubsub) and publishes the rows behind them', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }), retryBatchSize: 4 });
      const { outbox, clock } = h;
      const now = clock.now();
      const early = { nextAttemptTime: now - 60_000 };
      const [unparsable] = await seedRows(outbox, 1, { ...early, topic: 'OrderPlaced', content: '{"orderId": 1,' }, now);
      const forbidden = await seedRows(outbox, 2, { ...early, topic: 'Forbidden' }, now);
      const [unknownPubsub] = await seedRows(outbox, 1, { ...early, topic: 'OrderPlaced', pubsubName: 'nope' }, now);
      const good = await seedRows(outbox, 20, { topic: 'OrderPlaced', nextAttemptTime: now - 1_000 }, now);
      const poison = [unparsable!, ...forbidden, unknownPubsub!];
      const terminal: string[] = [];
      outbox.on('terminalFailure', (e) => terminal.push(e.id));

      // The first batch (the 4 earliest) is all poison: the pass goes on, since no failure was transient.
      assert.equal(await outbox.runPass('retry-by-database'), 24);
      assert.deepEqual(terminal.sort(), [...poison].sort());
      const seen = acceptedById(emu);
      assert.ok(good.every((id) => seen.get(id) === 1), 'every good row published once');
      assert.ok(poison.every((id) => !seen.has(id)));
      const rows = await readRows(outbox, poison);
      assert.ok(rows.every((r) => r.state === EventState.PublishedFailed && r.nextAttemptTime === null));
      const errorOf = (id: string) => rows.find((r) => r.id === id)!.lastError ?? '';
      assert.match(errorOf(unparsable!), /not valid JSON/);
      assert.match(errorOf(forbidden[0]!), /403/);
      assert.match(errorOf(unknownPubsub!), /404/);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 20, publishedFailed: 0, terminalFailed: 4 });
    });

    it('a bulk publish that fails in part retries only the failed entries', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }), minimumRetryInterval: 5 });
      const { outbox, clock } = h;
      const ids = await seedRows(outbox, 10, { topic: 'OrderPlaced' }, clock.now());
      emu.faults.failNextPublishes(3);
      assert.equal(await outbox.runPass('retry-by-database'), 10);
      const bulkRequests = emu.requests.filter((r) => r.path.includes('/publish/bulk/'));
      assert.equal(bulkRequests.length, 1, 'one bulk call for the topic');
      const rows = await readRows(outbox, ids);
      const failed = rows.filter((r) => r.state === EventState.PublishedFailed);
      assert.equal(failed.length, 3);
      assert.equal(rows.filter((r) => r.state === EventState.Published).length, 7);

      clock.advance(3600);
      assert.equal(await outbox.runPass('retry-by-database'), 3);
      const seen = acceptedById(emu);
      assert.ok(ids.every((id) => seen.get(id) === 1), 'each event accepted once in all');
      assert.equal((await outbox.stats()).published, 10);
    });

    it('sidecar refusing everything: rows back off, then all go through once it recovers', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }), minimumRetryInterval: 30, retryBatchSize: 50 });
      const { outbox, clock } = h;
      const ids = await seedRows(outbox, 120, { topic: 'OrderPlaced' }, clock.now());
      emu.faults.failNextPublishes(1_000_000);
      // One batch, all failing for a transient reason (500): the pass waits for its next tick.
      assert.equal(await outbox.runPass('retry-by-database'), 50);
      assert.equal(await drain(() => outbox.runPass('retry-by-database')), 70);
      assert.equal((await outbox.stats()).publishedFailed, 120);
      assert.equal(acceptedById(emu).size, 0);

      emu.faults.reset();
      clock.advance(3600);
      assert.equal(await drain(() => outbox.runPass('retry-by-database')), 120);
      const seen = acceptedById(emu);
      assert.ok(ids.every((id) => seen.get(id) === 1));
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 120, publishedFailed: 0, terminalFailed: 0 });
    });
  });
}
