/**
 * Three relays draining one backlog on MariaDB or PostgreSQL in small batches: their claims and
 * marks meet on the same index pages all the time. A lock conflict the database resolves by picking a victim
 * (deadlock, lock wait) is retried within the pass: no error reaches the operator, and every row
 * is published exactly once.
 */
import assert from 'node:assert/strict';
import { QueryTypes } from 'sequelize';
import { createTestDb, serverDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { makeOutbox, seedRows, type Harness } from './helpers';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const ROWS = Number(process.env.ROWS ?? 100);
const BATCH = Number(process.env.BATCH ?? 5);

for (const kind of serverDialects()) {
  describe(`processors: three relays draining a backlog in small batches (${kind})`, function () {
    this.timeout(180_000);
    let db: TestDb;
    const relays: Harness[] = [];

    before(async () => (db = await createTestDb(kind)));
    after(async () => {
      for (const r of relays) await r.outbox.close();
      await db?.close();
    });

    it(`publishes each of ${ROUNDS * ROWS} rows once and reports no error`, async () => {
      const seeder = await makeOutbox(db.sequelize);
      for (let i = 0; i < 3; i++) {
        relays.push(await makeOutbox(db.another(), { publisher: new RecordingPublisher(), clock: { now: () => Date.now() }, instanceId: `relay-${i}`, retryBatchSize: BATCH, batchSize: BATCH }));
      }
      // Many backlogs, each drained to the end: the claims that reach the end of the due rows lock
      // the gap after them, where every claim and mark writes its new next_attempt_time.
      const deadlocks = async () => {
        const q = kind === 'postgres' ? 'SELECT deadlocks AS "Value" FROM pg_stat_database WHERE datname = current_database()' : "SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'";
        const [row] = (await db.sequelize.query(q, { type: QueryTypes.SELECT })) as Array<{ Value?: string }>;
        return Number(row?.Value ?? NaN);
      };
      const deadlocksBefore = await deadlocks();
      const ids: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const now = Date.now();
        ids.push(...(await seedRows(seeder.outbox, ROWS, { topic: 'Backlog', nextAttemptTime: now - 60_000, lockedUntil: now - 60_000 }, now)));
        // Each relay runs its passes back to back until it finds nothing, as the relay drain benchmark does.
        await Promise.all(
          relays.map(async (r) => {
            while ((await r.outbox.runPass('retry-by-database')) > 0);
          }),
        );
      }
      await seeder.outbox.close();

      const problems = relays.flatMap((r) => [...r.errors.map((e) => e.message), ...r.logger.at('error').map((l) => l.message)]);
      // Server-wide on MariaDB (so other work there may add to it), per database on PostgreSQL: a figure, not an assertion.
      console.log(`      ${ROUNDS} backlogs of ${ROWS} rows; deadlocks on the server meanwhile: ${(await deadlocks()) - deadlocksBefore}; errors: ${problems.length}${problems[0] ? `; first: ${problems[0]}` : ''}`);
      assert.deepEqual(problems, [], 'no error logged or emitted');
      const perId = new Map<string, number>();
      for (const r of relays) for (const m of r.publisher.messages) perId.set(m.id, (perId.get(m.id) ?? 0) + 1);
      assert.equal(perId.size, ids.length, 'every row was published');
      assert.deepEqual([...perId].filter(([, n]) => n > 1), [], 'no row was published twice');
      assert.ok(ids.every((id) => perId.get(id) === 1));
      assert.deepEqual(await relays[0]!.outbox.stats(), { notPublished: 0, inProgress: 0, published: ids.length, publishedFailed: 0, terminalFailed: 0 });
    });
  });
}
