/**
 * A unit of work may hold several events near maxEventBytes: their INSERT must not outgrow what
 * the server takes in one statement (MariaDB's max_allowed_packet is 16 MiB by default).
 */
import assert from 'node:assert/strict';
import { QueryTypes } from 'sequelize';
import { createOutbox, type Outbox } from '../../src';
import { INSERT_BUDGET_BYTES, insertStatements } from '../../src/adapters/sequelize/outbox-sql';
import { silentLogger } from '../../src/core/logger';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';

const MiB = 1024 * 1024;

describe('the outbox INSERT, split by bytes', () => {
  const row = (id: string, content: string) => ({ id, eventTypeName: 'T', topic: 'T', pubsubName: 'pubsub', content, creationTime: 0 });
  it('is one statement for the usual unit of work', () => {
    const rows = Array.from({ length: 500 }, (_, i) => row(`e-${i}`, JSON.stringify({ n: i, text: "it's" })));
    assert.equal(insertStatements('mysql', 'outbox', rows, 'me', 1, 0).length, 1);
  });
  it('keeps each statement within the budget, measured after escaping', () => {
    const rows = Array.from({ length: 6 }, (_, i) => row(`e-${i}`, "'".repeat(3 * MiB)));
    const statements = insertStatements('mysql', 'outbox', rows, 'me', 1, 0);
    assert.equal(statements.length, 6, 'each 6 MiB once escaped, so no two share a statement');
    assert.equal(insertStatements('sqlite', 'outbox', rows.slice(0, 2), 'me', 1, 0, 13 * MiB).length, 1);
    const plain = Array.from({ length: 6 }, (_, i) => row(`e-${i}`, 'x'.repeat(3.5 * MiB)));
    assert.deepEqual(insertStatements('mysql', 'outbox', plain, 'me', 1, 0).map((q) => q.params.length / 12), [2, 2, 2]);
    assert.ok(INSERT_BUDGET_BYTES < 16 * MiB);
  });
});

for (const kind of testDialects()) {
  describe(`events near maxEventBytes in one unit of work (${kind})`, function () {
    this.timeout(120_000);
    let db: TestDb;
    let outbox: Outbox;
    let publisher: RecordingPublisher;
    before(async () => {
      db = await createTestDb(kind);
      publisher = new RecordingPublisher();
      outbox = createOutbox({ sequelize: db.sequelize, publisher, logger: silentLogger });
      await outbox.migrate();
    });
    after(async () => {
      await outbox.close();
      await db.close();
    });

    const rowsOf = async (ids: string[]) =>
      (await db.sequelize.query(`SELECT event_id, LENGTH(content) AS n FROM integration_event_log WHERE event_id IN (?)`, { replacements: [ids], type: QueryTypes.SELECT })) as Array<{ event_id: string; n: number }>;

    it('commits six events of 3.5 MiB each, every row written', async () => {
      const ids = Array.from({ length: 6 }, (_, i) => `big-${i}`);
      await outbox.runInUnitOfWork(async () => {
        for (const id of ids) await outbox.bus.publish({ id, topic: 'blobs', blob: 'x'.repeat(3.5 * MiB) });
      });
      await outbox.drain();
      assert.deepEqual((await rowsOf(ids)).map((r) => r.event_id).sort(), ids);
      assert.deepEqual(publisher.messages.filter((m) => m.topic === 'blobs').map((m) => m.id).sort(), ids);
    });

    it('counts what escaping adds: three events of 3.5 MiB full of quotes and backslashes', async () => {
      const ids = Array.from({ length: 3 }, (_, i) => `quoted-${i}`);
      // Each quote doubles in the statement text; each backslash doubles in the JSON, then again in the statement.
      const blob = `'\\x`.repeat((3.5 * MiB) / 4);
      await outbox.runInUnitOfWork(async () => {
        for (const id of ids) await outbox.bus.publish({ id, topic: 'quoted', blob });
      });
      await outbox.drain();
      const rows = await rowsOf(ids);
      assert.deepEqual(rows.map((r) => r.event_id).sort(), ids);
      const first = publisher.messages.find((m) => m.id === ids[0]);
      assert.equal((JSON.parse(first!.content) as { blob: string }).blob, blob, 'the content is stored as it was published');
    });
  });
}
