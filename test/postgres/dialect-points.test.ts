/**
 * What PostgreSQL does differently from the other dialects, each checked against the server:
 * BIGINT values come back from `pg` as strings; claims are one UPDATE ... RETURNING; a duplicate
 * inbox key must not raise 23505 (it would abort the handler's transaction); serialization
 * failures (40001) and deadlocks (40P01) answer RETRY and count as lock conflicts.
 */
import assert from 'node:assert/strict';
import request from 'supertest';
import { QueryTypes, Transaction, type Sequelize } from 'sequelize';
import { createOutbox, createSubscriptionRouter, type Outbox } from '../../src';
import { runMigrations, SequelizeOutboxStore, silentLogger } from '../../src/extend';
import { isLockConflict } from '../../src/adapters/sequelize/outbox-store';
import { SequelizeInboxStore } from '../../src/adapters/sequelize/inbox-store';
import { inTransaction } from '../../src/adapters/sequelize/transactions';
import type { OutboxMessage } from '../../src/ports/publisher';
import { createTestDb, requirePostgres, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { appWith, daprEnvelope, deliveryHeaders, recordingLogger, type LogEntry } from '../router/helpers';

const TABLE = 'integration_event_log';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function message(id: string, creationTime: number): OutboxMessage {
  return { id, eventTypeName: 'Probe', topic: 'probes', pubsubName: 'pubsub', content: '{}', creationTime };
}

/** Waits until a session of this database waits for a lock in a statement starting with `prefix`. */
async function untilWaiting(observer: Sequelize, prefix: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const [row] = (await observer.query(
      `SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ?`,
      { replacements: [`${prefix}%`], type: QueryTypes.SELECT },
    )) as Array<{ n: unknown }>;
    if (Number(row?.n) > 0) return;
    await sleep(5);
  }
  throw new Error(`no session came to wait in "${prefix}..."`);
}

/** The error a failed handler was logged with. */
function loggedError(entries: LogEntry[]): { error: unknown; code: unknown } {
  const entry = entries.find((e) => e.level === 'error' && e.context?.error !== undefined);
  const error = entry?.context?.error;
  return { error, code: (error as { parent?: { code?: unknown } } | undefined)?.parent?.code };
}

describe('PostgreSQL dialect points', () => {
  let db: TestDb | undefined;
  before(async function () {
    requirePostgres(this);
    db = await createTestDb('postgres');
    await runMigrations(db.sequelize);
  });
  after(async () => {
    await db?.close();
  });
  beforeEach(async () => {
    await db?.sequelize.query(`TRUNCATE ${TABLE}, integration_event_inbox RESTART IDENTITY`);
  });

  describe('BIGINT columns, which pg returns as strings', () => {
    it('are strings from the driver (what the store has to convert)', async () => {
      const store = new SequelizeOutboxStore(db!.sequelize, TABLE);
      await store.insert([message('a', 1)], null, 'me', 5, 1);
      const [row] = (await db!.sequelize.query(`SELECT id, next_attempt_time FROM ${TABLE}`, { type: QueryTypes.SELECT })) as Array<Record<string, unknown>>;
      assert.equal(typeof row!.id, 'string');
      assert.equal(typeof row!.next_attempt_time, 'string');
    });

    it('compare as numbers: times across a digit boundary and row ids 9, 10, 11 come back in numeric order', async () => {
      const store = new SequelizeOutboxStore(db!.sequelize, TABLE);
      // Row ids from 9 on: as strings "10" < "11" < "9".
      await db!.sequelize.query(`SELECT setval(pg_get_serial_sequence('${TABLE}', 'id'), 8)`);
      const late = 10_000_000_000_000; // as strings, "10000000000000" < "9999999999999"
      const early = 9_999_999_999_999;
      await store.insert([message('late', 1)], null, 'committer', late, 1); // id 9, due late
      await store.insert([message('early-1', 2)], null, 'committer', early, 2); // id 10, due early
      await store.insert([message('early-2', 3)], null, 'committer', early, 3); // id 11, due early

      const found = await store.find(['late', 'early-1', 'early-2']);
      assert.deepEqual(found.map((r) => [r.rowId, r.id, r.nextAttemptTime, r.lockedUntil, r.creationTime]), [
        [9, 'late', late, late, 1],
        [10, 'early-1', early, early, 2],
        [11, 'early-2', early, early, 3],
      ]);
      for (const r of found) for (const v of [r.rowId, r.nextAttemptTime, r.lockedUntil, r.creationTime, r.modificationTime, r.timesSent, r.rowVersion]) assert.equal(typeof v, 'number');

      // Not yet due at `early - 1`; at `early` only the two early rows, in row id order (10 before 11).
      assert.deepEqual(await store.claimDue(10, early - 1, 'relay', early + 30_000), []);
      const first = await store.claimDue(10, early, 'relay', late + 30_000);
      assert.deepEqual(first.map((r) => [r.rowId, r.id]), [[10, 'early-1'], [11, 'early-2']]);
      // The lease stamped by the first claim (a time past the digit boundary) holds them; the late row is due now.
      const second = await store.claimDue(10, late, 'other', late + 60_000);
      assert.deepEqual(second.map((r) => r.id), ['late']);
      assert.equal(second[0]!.lockedUntil, late + 60_000);
      // Past the first lease, the early rows are due again for another claimer.
      const third = await store.claimDue(10, late + 30_000, 'other', late + 90_000);
      assert.deepEqual(third.map((r) => r.id), ['early-1', 'early-2']);
      assert.deepEqual(third.map((r) => r.timesSent), [3, 3]);

      assert.deepEqual(await store.stats(), { notPublished: 0, inProgress: 3, published: 0, publishedFailed: 0, terminalFailed: 0 });
      const dbNow = await store.currentTime();
      assert.equal(typeof dbNow, 'number');
      assert.ok(Math.abs(dbNow - Date.now()) < 60_000, `the database's clock reads ${dbNow}`);
    });

    it('cleans up by time across a digit boundary', async () => {
      const store = new SequelizeOutboxStore(db!.sequelize, TABLE);
      await store.insert([message('old', 1), message('new', 1)], null, 'me', 1, 1);
      await store.markPublished(['old'], 9_999_999_999_999);
      await store.markPublished(['new'], 10_000_000_000_001);
      assert.equal(await store.deletePublished(10_000_000_000_000, 100), 1);
      assert.deepEqual((await store.find(['old', 'new'])).map((r) => r.id), ['new']);
    });
  });

  describe('claims', () => {
    it('are one UPDATE ... RETURNING, in no transaction of their own', async () => {
      const statements: string[] = [];
      const logged = db!.another({ logging: (sql: string) => statements.push(sql) });
      const store = new SequelizeOutboxStore(logged, TABLE);
      await store.insert([message('a', 1), message('b', 2)], null, 'committer', 10, 1);
      statements.length = 0;
      const claimed = await store.claimDue(10, 100, 'relay', 1_000);
      assert.deepEqual(claimed.map((r) => [r.id, r.lockOwner, r.lockedUntil, r.nextAttemptTime, r.state, r.timesSent, r.rowVersion, r.modificationTime]), [
        ['a', 'relay', 1_000, 1_000, 1, 2, 2, 100],
        ['b', 'relay', 1_000, 1_000, 1, 2, 2, 100],
      ]);
      assert.equal(statements.length, 1, statements.join('\n'));
      assert.match(statements[0]!, /FOR UPDATE SKIP LOCKED\) UPDATE .* RETURNING /s);
      // What RETURNING gave is what the table holds.
      assert.deepEqual(await store.find(['a', 'b']), claimed);
    });

    it('skip rows another claim holds: concurrent claimers never share a row', async () => {
      const store = new SequelizeOutboxStore(db!.sequelize, TABLE);
      const ids = Array.from({ length: 300 }, (_, i) => `r${i}`);
      await store.insert(ids.map((id) => message(id, 1)), null, 'committer', 10, 1);
      const claimers = [db!.another(), db!.another(), db!.another()].map((s) => new SequelizeOutboxStore(s, TABLE));
      const taken = await Promise.all(
        claimers.map(async (c, n) => {
          const mine: string[] = [];
          for (;;) {
            const rows = await c.claimDue(7, 100, `relay-${n}`, 1_000_000);
            if (rows.length === 0) return mine;
            mine.push(...rows.map((r) => r.id));
          }
        }),
      );
      const all = taken.flat();
      assert.equal(all.length, ids.length);
      assert.equal(new Set(all).size, ids.length, 'no row claimed twice');
    });
  });

  describe('the inbox: a duplicate key is no 23505', () => {
    it('a duplicate answers false and leaves the transaction usable: its other writes commit', async () => {
      const inbox = new SequelizeInboxStore(db!.sequelize, 'integration_event_inbox');
      const outbox = new SequelizeOutboxStore(db!.sequelize, TABLE);
      await inTransaction(db!.sequelize, (tx) => inbox.record('c', 'e1', tx, 1));
      await inTransaction(db!.sequelize, async (tx) => {
        await outbox.insert([message('written-before', 1)], tx, 'me', 1, 1);
        assert.equal(await inbox.record('c', 'e1', tx, 2), false);
        await outbox.insert([message('written-after', 1)], tx, 'me', 1, 1);
      });
      assert.deepEqual((await outbox.find(['written-before', 'written-after'])).map((r) => r.id), ['written-before', 'written-after']);
    });

    it('a duplicate of an uncommitted record waits, then answers false if it committed and true if it rolled back', async () => {
      const inbox = new SequelizeInboxStore(db!.sequelize, 'integration_event_inbox');
      const other = db!.another();
      const otherInbox = new SequelizeInboxStore(other, 'integration_event_inbox');
      for (const [outcome, expected] of [['commit', false], ['rollback', true]] as const) {
        const id = `pending-${outcome}`;
        const first = await other.transaction();
        assert.equal(await otherInbox.record('c', id, first, 1), true);
        const second = inTransaction(db!.sequelize, (tx) => inbox.record('c', id, tx, 2));
        await untilWaiting(other, 'INSERT INTO "integration_event_inbox"');
        await (outcome === 'commit' ? first.commit() : first.rollback());
        assert.equal(await second, expected, `after the first ${outcome}`);
      }
    });
  });

  describe('serialization failures and deadlocks in a delivery', () => {
    const route = '/dapr-outbox/pubsub/orders';
    let outbox: Outbox;
    let sequelize: Sequelize;

    before(async () => {
      await db!.sequelize.query('CREATE TABLE IF NOT EXISTS counters (id INT PRIMARY KEY, v INT NOT NULL)');
    });
    beforeEach(async () => {
      await db!.sequelize.query('DELETE FROM counters');
      await db!.sequelize.query('INSERT INTO counters VALUES (1, 0)');
    });
    afterEach(async () => {
      await outbox?.close();
    });

    /** A subscription router on `on`, its outbox closed after the test, and what it logs. */
    const routerOn = (on: Sequelize) => {
      outbox = createOutbox({ sequelize: on, publisher: new RecordingPublisher(), logger: silentLogger });
      const logger = recordingLogger();
      return { router: createSubscriptionRouter({ outbox, appApiToken: null, logger }), logger };
    };
    const counter = async () => {
      const [row] = (await db!.sequelize.query('SELECT v FROM counters WHERE id = 1', { type: QueryTypes.SELECT })) as Array<{ v: unknown }>;
      return Number(row?.v);
    };
    const inboxCount = async () => {
      const [row] = (await db!.sequelize.query('SELECT COUNT(*) AS n FROM integration_event_inbox', { type: QueryTypes.SELECT })) as Array<{ n: unknown }>;
      return Number(row?.n);
    };

    it('40001 (a concurrent update under REPEATABLE READ) answers RETRY, is a lock conflict, and the redelivery counts once', async () => {
      sequelize = db!.another({ isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ });
      const { router, logger } = routerOn(sequelize);
      let runs = 0;
      router.topic('pubsub', 'orders', async (_data, ctx) => {
        runs++;
        const tx = ctx.transaction as Transaction;
        // The snapshot was taken by the inbox record; another session updates the row after it.
        // (transaction: null, or Sequelize would run it in the ambient transaction of the delivery.)
        if (runs === 1) await db!.sequelize.query('UPDATE counters SET v = v + 10 WHERE id = 1', { transaction: null });
        await sequelize.query('UPDATE counters SET v = v + 1 WHERE id = 1', { transaction: tx });
      });
      const app = appWith(router);
      const body = daprEnvelope();
      const res = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(res.body, { status: 'RETRY' });
      const { error, code } = loggedError(logger.entries);
      assert.equal(code, '40001');
      assert.ok(isLockConflict(error), 'a serialization failure is a lock conflict');
      assert.equal(await inboxCount(), 0, 'the inbox record was rolled back with it');
      const again = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(again.body, { status: 'SUCCESS' });
      assert.equal(runs, 2);
      assert.equal(await counter(), 11);
      const dup = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(dup.body, { status: 'SUCCESS' });
      assert.equal(runs, 2, 'the duplicate did not run the handler');
    });

    it('40P01 (the delivery picked as deadlock victim) answers RETRY, is a lock conflict, and the redelivery counts once', async () => {
      sequelize = db!.sequelize;
      const { router, logger } = routerOn(sequelize);
      let runs = 0;
      router.topic('pubsub', 'orders', async (_data, ctx) => {
        runs++;
        await sequelize.query('SELECT v FROM counters WHERE id = 1 FOR UPDATE', { transaction: ctx.transaction as Transaction });
        await sequelize.query('UPDATE counters SET v = v + 1 WHERE id = 1', { transaction: ctx.transaction as Transaction });
      });
      const app = appWith(router);
      const body = daprEnvelope();
      const id = JSON.parse(body).id as string;

      const other = db!.another();
      const a = await other.transaction();
      // A waits long before checking for a deadlock, so the delivery is the one that finds it.
      await other.query("SET LOCAL deadlock_timeout = '30s'", { transaction: a });
      await other.query('SELECT v FROM counters WHERE id = 1 FOR UPDATE', { transaction: a });
      const answer = request(app).post(route).set(deliveryHeaders()).send(body).then((r) => r);
      // The delivery holds its inbox key and waits for A's row lock; then A asks for that key.
      await untilWaiting(other, 'SELECT v FROM counters');
      const blocked = other
        .query('INSERT INTO integration_event_inbox (consumer, event_id, handled_time) VALUES (?, ?, 0) ON CONFLICT DO NOTHING', { replacements: ['pubsub/orders', id], transaction: a })
        .catch(() => {});
      const res = await answer;
      await blocked;
      await a.rollback().catch(() => {});
      assert.deepEqual(res.body, { status: 'RETRY' });
      const { error, code } = loggedError(logger.entries);
      assert.equal(code, '40P01');
      assert.ok(isLockConflict(error), 'a deadlock is a lock conflict');
      assert.equal(await counter(), 0);

      const again = await request(app).post(route).set(deliveryHeaders()).send(body);
      assert.deepEqual(again.body, { status: 'SUCCESS' });
      assert.equal(runs, 2);
      assert.equal(await counter(), 1);
    });

    it('a unique violation (23505) of the handler is no lock conflict: RETRY, logged with its code', async () => {
      sequelize = db!.sequelize;
      const { router, logger } = routerOn(sequelize);
      router.topic('pubsub', 'orders', async (_data, ctx) => {
        await sequelize.query('INSERT INTO counters VALUES (1, 0)', { transaction: ctx.transaction as Transaction });
      });
      const res = await request(appWith(router)).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'RETRY' });
      const { error, code } = loggedError(logger.entries);
      assert.equal(code, '23505');
      assert.equal(isLockConflict(error), false);
      assert.equal(await inboxCount(), 0);
    });
  });
});
