import assert from 'node:assert/strict';
import { QueryTypes, type Sequelize } from 'sequelize';
import * as sql from '../../src/adapters/sequelize/outbox-sql';
import { selectHandledBefore } from '../../src/adapters/sequelize/inbox-store';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { explainPostgres, fillHistory } from '../support/history';
import { makeOutbox, seedRows, type Harness } from './helpers';

interface PlanRow {
  table: string;
  type: string;
  key: string | null;
}

async function explain(sequelize: Sequelize, q: { sql: string; params: unknown[] }): Promise<PlanRow[]> {
  return (await sequelize.query(`EXPLAIN ${q.sql}`, { replacements: q.params, type: QueryTypes.SELECT })) as PlanRow[];
}

/** The plan's rows that read the given table (derived tables and subquery keys aside). */
function reads(plan: PlanRow[], table: string): PlanRow[] {
  const rows = plan.filter((r) => r.table === table);
  assert.ok(rows.length > 0, `the plan reads ${table}: ${JSON.stringify(plan)}`);
  return rows;
}

function assertIndexed(plan: PlanRow[], table: string, key: string): void {
  for (const row of reads(plan, table)) {
    assert.notEqual(row.type, 'ALL', `full table scan: ${JSON.stringify(plan)}`);
    assert.notEqual(row.type, 'index', `full index scan: ${JSON.stringify(plan)}`);
    assert.equal(row.key, key, JSON.stringify(plan));
  }
}

if (testDialects().includes('mysql')) {
  describe('processors: the claim and cleanup queries use their indexes (MariaDB EXPLAIN)', () => {
    let db: TestDb;
    let h: Harness;
    let table: string;
    const now = Date.now();
    const day = 86_400_000;

    before(async () => {
      db = await createTestDb('mysql');
      h = await makeOutbox(db.sequelize);
      table = h.outbox.tables.outbox;
      // A month of history: mostly Published rows, some live work, some terminal failures.
      await seedRows(h.outbox, 27_000, (i) => ({ state: 2, nextAttemptTime: null, lockOwner: null, lockedUntil: null, modificationTime: now - 30 * day + i * 96_000 }), now);
      await seedRows(h.outbox, 2_000, (i) => ({ state: [0, 1, 3][i % 3], nextAttemptTime: now - 3_600_000 + i * 3_600, modificationTime: now }), now);
      await seedRows(h.outbox, 1_000, { state: 3, nextAttemptTime: null, lockOwner: null, lockedUntil: null, modificationTime: now - 40 * day }, now);
      const inbox = h.outbox.tables.inbox;
      for (let start = 0; start < 20_000; start += 1_000) {
        const values = Array.from({ length: 1_000 }, (_, i) => `('c${(start + i) % 3}', 'e${start + i}', ${now - 30 * day + (start + i) * 120_000})`);
        await db.sequelize.query(`INSERT INTO \`${inbox}\` (consumer, event_id, handled_time) VALUES ${values.join(', ')}`);
      }
      await db.sequelize.query(`ANALYZE TABLE \`${table}\`, \`${inbox}\``);
    });
    after(async () => {
      await h.outbox.close();
      await db.close();
    });

    it('claim with SKIP LOCKED: a range on the next_attempt_time index', async () => {
      assertIndexed(await explain(db.sequelize, sql.selectDueForUpdate('mariadb', table, 100, now)), table, `ix_${table}_next_attempt`);
    });

    it('claim without SKIP LOCKED (older servers): the token UPDATE reads the same index', async () => {
      assertIndexed(await explain(db.sequelize, sql.claimByToken('mariadb', table, 100, 'token', now + 30_000, now)), table, `ix_${table}_next_attempt`);
    });

    it('cleanup: expired Published rows by the (state, modification_time) index, few or many', async () => {
      for (const before of [now - 29 * day, now - day]) {
        assertIndexed(await explain(db.sequelize, sql.selectExpiredPublished('mariadb', table, before, 1000)), table, `ix_${table}_state_modified`);
      }
    });

    it('cleanup: the delete goes by primary key', async () => {
      const rowIds = Array.from({ length: 500 }, (_, i) => i * 7 + 1);
      assertIndexed(await explain(db.sequelize, sql.deleteByRowIds('mariadb', table, rowIds)), table, 'PRIMARY');
    });

    it('inbox cleanup: the select the store runs reads the handled_time index', async () => {
      // Captures the statement SequelizeInboxStore.deleteOlderThan sends, then explains it.
      const seen: Array<{ sql: string; params: unknown[] }> = [];
      const query = db.sequelize.query.bind(db.sequelize);
      (db.sequelize as { query: unknown }).query = (text: string, options?: { replacements?: unknown[] }) => {
        if (/^SELECT/i.test(text)) seen.push({ sql: text, params: options?.replacements ?? [] });
        return (query as (...a: unknown[]) => unknown)(text, options);
      };
      try {
        await h.outbox.inbox!.deleteOlderThan(now - 29 * day, 1000);
      } finally {
        delete (db.sequelize as { query?: unknown }).query;
      }
      assert.equal(seen.length, 1);
      const inbox = h.outbox.tables.inbox;
      assertIndexed(await explain(db.sequelize, seen[0]!), inbox, `ix_${inbox}_handled`);
    });
  });
}

/** No Seq Scan anywhere; the table is read through `indexes` only, and through `required` for sure. */
async function assertPgIndexed(sequelize: Sequelize, q: { sql: string; params: unknown[] }, table: string, indexes: string[], required: string): Promise<void> {
  const { plan, nodes } = await explainPostgres(sequelize, q);
  const shown = JSON.stringify(plan);
  assert.deepEqual(nodes.filter((n) => n['Node Type'] === 'Seq Scan'), [], `a Seq Scan: ${shown}`);
  // Bitmap Index Scans name only the index; the Bitmap Heap Scan above them names the table.
  const scans = nodes.filter((n) => /Index/.test(n['Node Type']) && (n['Relation Name'] === table || n['Index Name']?.includes(table)));
  assert.ok(scans.length > 0, `the plan reads ${table} by an index: ${shown}`);
  for (const n of scans) assert.ok(indexes.includes(n['Index Name']!), `${n['Node Type']} using ${n['Index Name']}: ${shown}`);
  assert.ok(scans.some((n) => n['Index Name'] === required), `${required} is used: ${shown}`);
}

if (testDialects().includes('postgres')) {
  describe('processors: the claim and cleanup queries use their indexes at 1,000,000 rows (PostgreSQL EXPLAIN)', function () {
    this.timeout(180_000);
    let db: TestDb;
    let h: Harness;
    let table: string;
    let inbox: string;
    const now = Date.now();
    const day = 86_400_000;

    before(async () => {
      db = await createTestDb('postgres');
      h = await makeOutbox(db.sequelize);
      table = h.outbox.tables.outbox;
      inbox = h.outbox.tables.inbox;
      // The figure 4 table: 98% Published over two days, 1% due, 1% failed with a later attempt.
      await fillHistory(db.sequelize, 'postgres', table, 1_000_000, now);
      await db.sequelize.query(
        `INSERT INTO ${inbox} (consumer, event_id, handled_time) SELECT 'c' || (k % 3), 'e' || k, ${now - 30 * day} + k * 12000 FROM generate_series(CAST(1 AS BIGINT), 200000) AS g(k)`,
      );
      await db.sequelize.query(`ANALYZE ${inbox}`);
    });
    after(async () => {
      await h?.outbox.close();
      await db?.close();
    });

    it('relay under row locks: the locked SELECT ... FOR UPDATE SKIP LOCKED reads the next_attempt_time index', async () => {
      await assertPgIndexed(db.sequelize, sql.selectDueForUpdate('postgres', table, 100, now), table, [`ix_${table}_next_attempt`], `ix_${table}_next_attempt`);
    });

    it('relay under row locks: its Published and failed marks go by primary key', async () => {
      const rowIds = Array.from({ length: 100 }, (_, i) => i * 97 + 1);
      await assertPgIndexed(db.sequelize, sql.markPublishedByRowIds('postgres', table, rowIds, now), table, [`${table}_pkey`], `${table}_pkey`);
      await assertPgIndexed(db.sequelize, sql.markFailedByRowId('postgres', table, 4242, 'down', now + 1000, now), table, [`${table}_pkey`], `${table}_pkey`);
    });

    it('claimDue: the UPDATE ... RETURNING finds due rows by the next_attempt_time index, and updates them by primary key', async () => {
      await assertPgIndexed(db.sequelize, sql.claimReturning('postgres', table, 100, 'relay', now + 30_000, now), table, [`ix_${table}_next_attempt`, `${table}_pkey`], `ix_${table}_next_attempt`);
    });

    it('cleanup: expired Published rows by the (state, modification_time) index, few or many', async () => {
      for (const before of [now - 1.9 * day, now - day, now]) {
        await assertPgIndexed(db.sequelize, sql.selectExpiredPublished('postgres', table, before, 1000), table, [`ix_${table}_state_modified`], `ix_${table}_state_modified`);
      }
    });

    it('cleanup: the delete goes by primary key', async () => {
      const rowIds = Array.from({ length: 500 }, (_, i) => i * 7 + 1);
      await assertPgIndexed(db.sequelize, sql.deleteByRowIds('postgres', table, rowIds), table, [`${table}_pkey`], `${table}_pkey`);
    });

    it('marks go by the event id index', async () => {
      const ids = Array.from({ length: 100 }, (_, i) => `evt-${i * 100}`);
      await assertPgIndexed(db.sequelize, sql.markPublished('postgres', table, ids, now), table, [`ux_${table}_event_id`], `ux_${table}_event_id`);
    });

    it('inbox cleanup: the oldest entries by the handled_time index', async () => {
      const q = selectHandledBefore('postgres', inbox, now - 29 * day, 1000);
      await assertPgIndexed(db.sequelize, q, inbox, [`ix_${inbox}_handled`], `ix_${inbox}_handled`);
    });
  });
}
