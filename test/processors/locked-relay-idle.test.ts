/**
 * The relay under row locks holds its batch's locks while the batch is out at the broker. A process
 * that freezes there (a stopped VM, a partition that leaves its connection open) must not hold
 * them for good: the transaction may sit idle for `leaseTime`, then the database ends the
 * connection and the rows are free, as a lease runs out. And the limit is the relay's own: the
 * pooled connection goes back with the session's setting as it was.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import type { Query } from '../../src/adapters/sequelize/outbox-sql';
import { EventState } from '../../src/extend';
import { createTestDb, serverDialects, type TestDb } from '../support/db';
import { GatedPublisher, makeOutbox, relaysUnderLocks, seedRows, until, type Harness } from './helpers';

/** The session's idle limit as the next query on the pool's connection sees it. */
async function idleSetting(sequelize: Sequelize, kind: 'mysql' | 'postgres', transaction: Transaction | null = null): Promise<string> {
  const q = kind === 'postgres' ? 'SHOW idle_in_transaction_session_timeout' : 'SELECT @@SESSION.wait_timeout AS v';
  const [row] = (await sequelize.query(q, { type: QueryTypes.SELECT, transaction })) as Array<Record<string, unknown>>;
  return String(Object.values(row ?? {})[0]);
}

for (const kind of serverDialects()) {
  describe(`processors: the relay under row locks, frozen while publishing (${kind})`, function () {
    this.timeout(30_000);
    let db: TestDb;
    const harnesses: Harness[] = [];
    let frozen: GatedPublisher | undefined;

    beforeEach(async () => {
      // One connection per pool: the setting read after a pass is the one the pass used.
      db = await createTestDb(kind, { pool: { max: 1, min: 0 } });
    });
    afterEach(async () => {
      frozen?.release();
      for (const h of harnesses.splice(0)) await h.outbox.close();
      await db.close();
    });

    it('its rows go to another relay once it has sat idle for leaseTime; its own outcome write then fails, reported, nothing lost', async () => {
      const gate = new GatedPublisher();
      frozen = gate;
      const a = await makeOutbox(db.sequelize, { publisher: gate, relayUnderRowLocks: true, leaseTime: 2, instanceId: 'frozen' });
      const b = await makeOutbox(db.another({ pool: { max: 1, min: 0 } }), { relayUnderRowLocks: true, leaseTime: 2, instanceId: 'awake', clock: a.clock });
      harnesses.push(a, b);
      assert.equal(await relaysUnderLocks(a), true);
      const ids = await seedRows(a.outbox, 5, {}, a.clock.now());

      gate.hold();
      const passA = a.outbox.runPass('retry-by-database');
      await until(() => gate.waiting > 0);
      assert.equal(await b.outbox.runPass('retry-by-database'), 0, 'the rows are locked while the batch is out');

      // Past the limit, the database has ended the frozen relay's connection: its locks are gone.
      await sleep(4_500);
      assert.equal(await b.outbox.runPass('retry-by-database'), 5, 'the other relay takes the rows');
      assert.equal(b.publisher.messages.length, 5);

      gate.release();
      assert.equal(await passA, 0, 'the frozen pass fails');
      assert.equal(a.errors.length, 1);
      assert.match(a.errors[0]!.message, /could not record the outcome of a published batch/);
      const rows = await b.store.find(ids);
      assert.equal(rows.length, 5);
      assert.ok(rows.every((r) => r.state === EventState.Published && r.timesSent === 2), 'Published, one attempt counted (seeded with one), by the awake relay');

      // The frozen relay's pool has dropped the ended connection and goes on with a new one.
      await seedRows(a.outbox, 2, {}, a.clock.now());
      assert.equal(await a.outbox.runPass('retry-by-database'), 2);
      assert.equal(a.errors.length, 1, 'no further error');
    });

    it('a leaseTime beyond what the database takes as an idle limit is capped, and the pass goes on', async () => {
      // About 31.7 years: more than PostgreSQL's limit (milliseconds in an int32) and MySQL's (365 days).
      const h = await makeOutbox(db.sequelize, { relayUnderRowLocks: true, leaseTime: 1e9 });
      harnesses.push(h);
      const ids = await seedRows(h.outbox, 3, {}, h.clock.now());
      assert.equal(await h.outbox.runPass('retry-by-database'), 3);
      assert.deepEqual(h.errors, []);
      assert.ok((await h.store.find(ids)).every((r) => r.state === EventState.Published));
    });

    it("the connection goes back to the pool with the session's idle limit as it was", async () => {
      const h = await makeOutbox(db.sequelize, { relayUnderRowLocks: true, leaseTime: 7 });
      harnesses.push(h);
      const before = await idleSetting(db.sequelize, kind);
      let during = '';
      // Once the pass has set its limit, read the setting on the pass's own connection, in its transaction.
      const store = h.store as unknown as { exec: (q: Query, tx: Transaction | null, gated?: boolean) => Promise<number> };
      const exec = store.exec.bind(store);
      store.exec = async (q, tx, gated) => {
        const n = await exec(q, tx, gated);
        if (tx && /^SET /.test(q.sql) && during === '') during = await idleSetting(db.sequelize, kind, tx);
        return n;
      };
      await seedRows(h.outbox, 3, {}, h.clock.now());
      assert.equal(await h.outbox.runPass('retry-by-database'), 3);
      assert.equal(during, kind === 'postgres' ? '7s' : '7', 'bounded while the batch is out');
      assert.equal(await idleSetting(db.sequelize, kind), before, 'as it was after the pass');
    });
  });
}
