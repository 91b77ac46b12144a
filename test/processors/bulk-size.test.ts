/**
 * Bulk calls against the sidecar's request size limit (4 MiB, daprd's default
 * dapr-http-max-request-size): batches are cut by bytes as well as by count, a call the sidecar
 * still refuses as too large is split, and only an event too large on its own fails for good.
 */
import assert from 'node:assert/strict';
import { DaprPublisher, IntegrationEvent } from '../../src';
import { EventState } from '../../src/extend';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { drain, makeOutbox, seedRows, type Harness } from './helpers';
import { readRows } from '../support/rows';

const KiB = 1024;
const MiB = 1024 * KiB;

class Upload extends IntegrationEvent {
  static topic = 'Uploads';
  constructor(public payload: string) {
    super();
  }
}

/** A row's content of about `bytes` bytes of JSON. */
const contentOf = (bytes: number) => (i: number) => ({ topic: 'Uploads', content: JSON.stringify({ n: i, payload: 'x'.repeat(bytes) }) });

for (const kind of testDialects()) {
  describe(`processors: bulk calls within the sidecar's request limit (${kind})`, function () {
    this.timeout(60_000);
    let db: TestDb;
    let emu: DaprEmulator;
    let h: Harness | undefined;

    beforeEach(async () => {
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'uploads' });
    });
    afterEach(async () => {
      await h?.outbox.close();
      h = undefined;
      await emu.stop();
      await db.close();
    });

    const accepted = () => emu.publishes.filter((p) => p.accepted).length;
    const publishRequests = () => emu.requests.filter((r) => r.path.includes('/publish/'));

    it('two 2.5 MiB events committed together are both published', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }) });
      const { outbox } = h;
      const events = [new Upload('a'.repeat(2.5 * MiB)), new Upload('b'.repeat(2.5 * MiB))];
      await outbox.runInUnitOfWork(() => outbox.bus.publishAll(events));
      await outbox.drain();
      assert.equal(accepted(), 2);
      assert.ok(publishRequests().every((r) => r.status === 204), 'no request over the limit');
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 2, publishedFailed: 0, terminalFailed: 0 });
    });

    it('two 2.5 MiB rows relayed by the database retry are both published', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }) });
      const { outbox, clock } = h;
      await seedRows(outbox, 2, contentOf(2.5 * MiB), clock.now());
      assert.equal(await outbox.runPass('retry-by-database'), 2);
      assert.equal(accepted(), 2);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 2, publishedFailed: 0, terminalFailed: 0 });
    });

    it('a backlog of 100 x 50 KiB rows drains in bulk calls under the limit', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }) });
      const { outbox, clock } = h;
      await seedRows(outbox, 100, contentOf(50 * KiB), clock.now());
      assert.equal(await drain(() => outbox.runPass('retry-by-database')), 100);
      assert.equal(accepted(), 100);
      const requests = publishRequests();
      assert.ok(requests.length >= 2, `a 5 MiB backlog needs several calls, got ${requests.length}`);
      assert.ok(requests.every((r) => r.status === 204));
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 100, publishedFailed: 0, terminalFailed: 0 });
    });

    it('a bulk call the sidecar refuses as too large (413) is split until it fits', async () => {
      // A byte budget above the sidecar's limit: the 413 itself has to be handled.
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }), maxBatchBytes: 64 * MiB });
      const { outbox, clock } = h;
      await seedRows(outbox, 4, contentOf(1.5 * MiB), clock.now());
      assert.equal(await outbox.runPass('retry-by-database'), 4);
      assert.equal(accepted(), 4);
      assert.deepEqual(publishRequests().map((r) => r.status), [413, 204, 204], 'four (6 MiB), then two and two (3 MiB each)');
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 4, publishedFailed: 0, terminalFailed: 0 });
    });

    it('an event over the sidecar limit on its own fails for good, alone', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }), maxEventBytes: 8 * MiB });
      const { outbox } = h;
      const big = new Upload('x'.repeat(5 * MiB));
      const small = [new Upload('s'), new Upload('t')];
      const terminal: string[] = [];
      outbox.on('terminalFailure', (e) => terminal.push(e.id));
      await outbox.runInUnitOfWork(() => outbox.bus.publishAll([small[0]!, big, small[1]!]));
      await outbox.drain();
      assert.deepEqual(terminal, [big.id]);
      const [row] = await readRows(outbox, [big.id]);
      assert.equal(row!.state, EventState.PublishedFailed);
      assert.equal(row!.nextAttemptTime, null);
      assert.match(row!.lastError ?? '', /413/);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 2, publishedFailed: 0, terminalFailed: 1 });
    });

    it('republish() of rows that failed as too large publishes them now', async () => {
      h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }) });
      const { outbox, clock } = h;
      // As an earlier version left them: terminal after a 413 to one bulk call of both.
      await seedRows(outbox, 2, (i) => ({ ...contentOf(2.5 * MiB)(i), state: EventState.PublishedFailed, nextAttemptTime: null, lockOwner: null, lockedUntil: null }), clock.now());
      assert.equal((await outbox.stats()).terminalFailed, 2);
      assert.equal(await outbox.republish({ topic: 'Uploads' }), 2);
      assert.equal(await outbox.runPass('retry-by-database'), 2);
      assert.equal(accepted(), 2);
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 2, publishedFailed: 0, terminalFailed: 0 });
    });

    for (const status of [408, 429]) {
      for (const bulk of [false, true]) {
        it(`a ${status} answer to a ${bulk ? 'bulk' : 'single'} publish is retried, not terminal`, async () => {
          h = await makeOutbox(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }), minimumRetryInterval: 10 });
          const { outbox, clock } = h;
          const ids = await seedRows(outbox, bulk ? 3 : 1, { topic: 'Uploads' }, clock.now());
          emu.faults.rejectNextPublishRequests(1, status);
          assert.equal(await outbox.runPass('retry-by-database'), ids.length);
          const rows = await readRows(outbox, ids);
          assert.ok(rows.every((r) => r.state === EventState.PublishedFailed && r.nextAttemptTime !== null), 'scheduled for a retry');
          assert.ok(rows.every((r) => new RegExp(String(status)).test(r.lastError ?? '')));

          clock.advance(20);
          assert.equal(await outbox.runPass('retry-by-database'), ids.length);
          assert.equal(accepted(), ids.length);
          assert.deepEqual(publishRequests().map((r) => r.status), [status, 204]);
          assert.equal((await outbox.stats()).published, ids.length);
        });
      }
    }
  });
}
