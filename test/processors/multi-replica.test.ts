import assert from 'node:assert/strict';
import { DaprPublisher } from '../../src';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { makeOutbox, seedRows, type Harness } from './helpers';

// With leases (the default), and under row locks where the database has SKIP LOCKED.
for (const kind of testDialects()) for (const relayUnderRowLocks of kind === 'sqlite' ? [false] : [false, true]) {
  // SQLite has one writer at a time: the same race, on fewer rows.
  const total = kind === 'sqlite' ? 1_000 : 10_000;

  describe(`processors: three replicas on one database (${kind}${relayUnderRowLocks ? ', row locks' : ''})`, () => {
    let db: TestDb;
    let emu: DaprEmulator;
    const replicas: Harness[] = [];

    before(async () => {
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'orders' });
    });
    after(async () => {
      for (const r of replicas) await r.outbox.close();
      await emu?.stop();
      await db?.close();
    });

    it(`publishes each of ${total} pending rows exactly once, counted at the sidecar`, async () => {
      const seeder = await makeOutbox(db.sequelize);
      const now = Date.now();
      // Left by committers that died: leased in the past, due now.
      const ids = await seedRows(seeder.outbox, total, { topic: 'OrderPlaced', nextAttemptTime: now - 60_000, lockedUntil: now - 60_000 }, now);
      await seeder.outbox.close();

      for (let i = 0; i < 3; i++) {
        replicas.push(
          await makeOutbox(db.another(), {
            publisher: new DaprPublisher({ daprPort: emu.port }),
            clock: { now: () => Date.now() },
            instanceId: `replica-${i}`,
            relayUnderRowLocks,
          }),
        );
      }

      const started = process.hrtime.bigint();
      // Every replica runs its claim pass over and over, all at once, until none finds work.
      const claimed = [0, 0, 0];
      for (;;) {
        const round = await Promise.all(replicas.map((r) => r.outbox.runPass('retry-by-database')));
        round.forEach((n, i) => (claimed[i]! += n));
        if (round.every((n) => n === 0)) break;
      }
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      await emu.idle();
      console.log(`      ${total} rows drained by 3 replicas in ${ms.toFixed(0)} ms; claims per replica: ${claimed.join(', ')}`);

      assert.deepEqual(
        replicas.flatMap((r) => r.errors.map((e) => e.message)),
        [],
        'no pass failed (no deadlock, no lock wait timeout)',
      );
      assert.equal(claimed.reduce((a, b) => a + b, 0), total, 'each row claimed once');

      const perId = new Map<string, number>();
      for (const p of emu.publishes) {
        if (!p.accepted || p.topic !== 'OrderPlaced') continue;
        const id = p.entryId ?? (p.envelope?.id as string | undefined);
        assert.ok(id, 'every publish carries the event id');
        perId.set(id, (perId.get(id) ?? 0) + 1);
      }
      assert.equal(perId.size, total, 'every row reached the sidecar');
      const repeated = [...perId].filter(([, n]) => n > 1);
      assert.deepEqual(repeated, [], 'no row published twice');
      assert.ok(ids.every((id) => perId.get(id) === 1));
      assert.deepEqual(await replicas[0]!.outbox.stats(), { notPublished: 0, inProgress: 0, published: total, publishedFailed: 0, terminalFailed: 0 });
    });
  });
}
