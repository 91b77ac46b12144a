/**
 * A statement that writes rows by id locks those rows and no other, however small the table: a
 * claim with SKIP LOCKED running while it is open still finds every other due row. And a claim
 * locks no gap (READ COMMITTED), so marks do not wait for it. (On a small
 * table MariaDB would rather read the whole table than seek each id, and under REPEATABLE READ
 * the write then keeps a lock on every row it read: the pipelined relay's claim, made while the
 * previous batch's mark ran, came back empty with rows due.)
 */
import assert from 'node:assert/strict';
import { QueryTypes } from 'sequelize';
import * as sql from '../../src/adapters/sequelize/outbox-sql';
import { dialectOf, type SqlDialect } from '../../src/adapters/sequelize/dialect';
import { inTransaction } from '../../src/adapters/sequelize/transactions';
import { EventState } from '../../src/extend';
import { createTestDb, serverDialects, type TestDb } from '../support/db';
import { makeOutbox, seedRows, type Harness, type SeedRow } from './helpers';

type Statement = (dialect: SqlDialect, table: string, ids: string[], rowIds: number[], now: number) => sql.Query;

const OWNER = 'this-relay';
const held: SeedRow = { state: EventState.InProgress, lockOwner: OWNER };

const statements: Array<{ name: string; rows: SeedRow; statement: Statement }> = [
  { name: 'the Published mark', rows: held, statement: (d, t, ids, _r, now) => sql.markPublished(d, t, ids, now) },
  { name: 'the release', rows: held, statement: (d, t, ids, _r, now) => sql.release(d, t, ids, OWNER, now, true) },
  { name: 'the lease extension', rows: held, statement: (d, t, ids, _r, now) => sql.extendLease(d, t, ids, OWNER, now + 120_000, now) },
  { name: 'the claim mark', rows: held, statement: (d, t, _i, rowIds, now) => sql.markClaimedByRowIds(d, t, rowIds, OWNER, now + 60_000, now) },
  { name: 'the locked relay Published mark', rows: held, statement: (d, t, _i, rowIds, now) => sql.markPublishedByRowIds(d, t, rowIds, now) },
  { name: 'the cleanup delete', rows: { state: EventState.Published, nextAttemptTime: null, lockOwner: null, lockedUntil: null }, statement: (d, t, _i, rowIds) => sql.deleteByRowIds(d, t, rowIds) },
  {
    name: 'the terminal delete',
    rows: { state: EventState.PublishedFailed, nextAttemptTime: null, lockOwner: null, lockedUntil: null },
    statement: (d, t, _i, rowIds) => sql.deleteTerminalByRowIds(d, t, rowIds),
  },
];

for (const kind of serverDialects()) {
  describe(`processors: the relay's writes lock only their rows (${kind})`, () => {
    let db: TestDb;
    let h: Harness;

    beforeEach(async () => {
      db = await createTestDb(kind);
      h = await makeOutbox(db.sequelize);
    });
    afterEach(async () => {
      await h?.outbox.close();
      await db.close();
    });

    for (const { name, rows, statement } of statements) {
      it(`a claim while ${name} of 10 rows is open takes 10 of the 20 rows due`, async () => {
        const now = h.clock.now();
        // The 10 written rows are not due (a lease, or no next attempt); the 20 others are.
        const written = await seedRows(h.outbox, 10, { nextAttemptTime: now + 60_000, lockedUntil: now + 60_000, ...rows }, now);
        const due = await seedRows(h.outbox, 20, (i) => ({ nextAttemptTime: now - 1_000 + i }), now);
        const table = h.outbox.tables.outbox;
        const rowIds = ((await db.sequelize.query(sql.selectByEventIds(dialectOf(db.sequelize), table, written).sql, { replacements: written, type: QueryTypes.SELECT })) as Array<{ id: unknown }>).map((r) => Number(r.id));
        assert.equal(rowIds.length, 10);

        let claimed: string[] = [];
        await inTransaction(db.sequelize, async (tx) => {
          const q = statement(dialectOf(db.sequelize), table, written, rowIds, now);
          const [, meta] = (await db.sequelize.query(q.sql, { replacements: q.params, transaction: tx, raw: true })) as [unknown, unknown];
          const changed = kind === 'postgres' ? (meta as { rowCount?: number }).rowCount : (meta as { affectedRows?: number }).affectedRows;
          assert.equal(changed, 10, 'the statement wrote its 10 rows');
          // Open, holding its locks: a claim now, on another connection.
          claimed = (await h.store.claimDue(10, now, 'another-relay', now + 30_000)).map((r) => r.id);
          throw new RollBack();
        }).catch((err: unknown) => {
          if (!(err instanceof RollBack)) throw err;
        });
        assert.deepEqual(claimed, due.slice(0, 10), 'the 10 oldest due rows, none skipped');
      });
    }

    // On PostgreSQL the claim is one statement; on MySQL and MariaDB a transaction: SELECT ... FOR
    // UPDATE SKIP LOCKED, then the UPDATE.
    if (kind === 'mysql') it('a claim in progress locks no gap: a mark of other rows goes through meanwhile', async () => {
      const now = h.clock.now();
      const marked = await seedRows(h.outbox, 5, { ...held, nextAttemptTime: now + 60_000, lockedUntil: now + 60_000 }, now);
      const due = await seedRows(h.outbox, 20, (i) => ({ nextAttemptTime: now - 1_000 + i }), now);
      // The claim stops after its UPDATE, its transaction open, until `letGo`.
      let letGo!: () => void;
      const gate = new Promise<void>((resolve) => (letGo = resolve));
      let paused!: () => void;
      const reached = new Promise<void>((resolve) => (paused = resolve));
      const store = h.store as unknown as { exec: (q: sql.Query, tx: unknown, gated?: boolean) => Promise<number> };
      const exec = store.exec.bind(store);
      store.exec = async (q, tx, gated) => {
        const n = await exec(q, tx, gated);
        if (tx && /SET state = 1, lock_owner/.test(q.sql)) {
          paused();
          await gate;
        }
        return n;
      };
      const claim = h.store.claimDue(10, now, 'relay-a', now + 30_000);
      await reached;
      try {
        // The mark writes NULL into next_attempt_time: the gap before the first due row, which a
        // claim under REPEATABLE READ holds locked to its COMMIT.
        const mark = await Promise.race([
          h.store.markPublished(marked, now).then(() => 'marked'),
          new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 10_000).unref()),
        ]);
        assert.equal(mark, 'marked', 'the mark waited for the claim');
      } finally {
        letGo();
      }
      assert.deepEqual((await claim).map((r) => r.id), due.slice(0, 10));
      assert.ok((await h.store.find(marked)).every((r) => r.state === EventState.Published));
    });
  });
}

class RollBack extends Error {}
