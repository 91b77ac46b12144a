/**
 * Where figure 3's drain time goes, and what overlapping the phases would give. Not part of
 * `npm run bench`; run it by hand: `npx tsx bench/diagnose-relay.ts [rows]` (MariaDB).
 *
 * 1. Per statement: the retry pass with leases on a backlog, with Sequelize's own timing of every
 *    statement (START TRANSACTION, the SELECT ... FOR UPDATE SKIP LOCKED, the claim and mark
 *    UPDATEs, COMMIT).
 * 2. The same store calls in two loops: one after the other as the pass runs them (claim,
 *    publish, mark), and pipelined (the next claim runs while this batch is published; the mark
 *    is not waited for), for claims of 100 and 1,000 rows.
 *
 * With `--profile` instead: the pass with the library's defaults (under row locks) drains the
 * backlog with the V8 profiler on, then the pass with leases, then figure 3's limit (the same
 * rows, read once, published by `sendMessages` with no claim or mark); busy CPU per event by
 * category and the top functions, side by side: `npx tsx bench/diagnose-relay.ts 100000 --profile`.
 */
import { Session } from 'node:inspector/promises';
import { QueryTypes } from 'sequelize';
import { createOutbox, DaprPublisher, type OutboxTuning } from '../src';
import { silentLogger } from '../src/extend';
import { sendMessages } from '../src/core/send';
import { createBenchDb, type BenchDb } from './support/db';
import { EmulatorProcess } from './support/emulator';
import { summarizeProfile, type Profile } from './support/profile';
import { countPublished, pendingRowsSql } from './support/rows';
import { internalsOf } from './support/services';

const TABLE = 'integration_event_log';

/** An outbox publishing to the emulator, and `reset`, which makes its table a backlog of n pending rows again. */
async function backlogOutbox(db: BenchDb, emu: EmulatorProcess, n: number, tuning: OutboxTuning = {}) {
  const o = createOutbox({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: emu.port }), logger: silentLogger, ...tuning });
  await o.migrate();
  const rows = pendingRowsSql(db.sequelize, TABLE, n);
  const reset = async () => {
    await db.sequelize.query(`TRUNCATE TABLE ${TABLE}`);
    for (const sql of rows) await db.sequelize.query(sql);
    await emu.clearRecords();
  };
  return { o, reset };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 30_000);
  const statements: Record<string, { n: number; ms: number }> = {};
  let recording = false;
  const db = await createBenchDb('mysql', {
    benchmark: true,
    logging: (sql: string, ms?: number) => {
      if (!recording) return;
      const key = sql.replace(/^Executed \([^)]*\): /, '').slice(0, 45);
      const s = (statements[key] ??= { n: 0, ms: 0 });
      s.n++;
      s.ms += ms ?? 0;
    },
  });
  const emu = await EmulatorProcess.start('users');
  try {
    for (const retryBatchSize of [100, 1000]) {
      const { o, reset } = await backlogOutbox(db, emu, n, { retryBatchSize, relayUnderRowLocks: false });

      await reset();
      for (const k of Object.keys(statements)) delete statements[k];
      recording = true;
      let t0 = performance.now();
      while ((await o.runPass('retry-by-database')) > 0);
      const passRate = n / ((performance.now() - t0) / 1000);
      recording = false;
      console.log(`\nclaim ${retryBatchSize}: the pass drains ${passRate.toFixed(0)} events/s; per statement (ms, with the wait for the event loop):`);
      for (const [sql, s] of Object.entries(statements)) {
        console.log(`  ${sql.padEnd(46)} x${String(s.n).padStart(5)}  avg ${(s.ms / s.n).toFixed(2)}  total ${s.ms.toFixed(0)}`);
      }

      for (const mode of ['one after the other', 'pipelined'] as const) {
        await reset();
        const claim = () => {
          const now = Date.now();
          return internalsOf(o).store.claimDue(retryBatchSize, now, o.owner, now + 30_000);
        };
        const send = (batch: Awaited<ReturnType<typeof claim>>) => sendMessages(o.publisher, batch, { bulk: true, batchSize: 100, maxBatchBytes: o.tuning.maxBatchBytes });
        t0 = performance.now();
        if (mode === 'one after the other') {
          for (let batch = await claim(); batch.length > 0; batch = await claim()) {
            const out = await send(batch);
            await internalsOf(o).store.markPublished(out.published.map((m) => m.id), Date.now());
          }
        } else {
          const marks: Promise<void>[] = [];
          let next = claim();
          for (let batch = await next; batch.length > 0; batch = await next) {
            next = claim();
            const out = await send(batch);
            marks.push(internalsOf(o).store.markPublished(out.published.map((m) => m.id), Date.now()));
            if (marks.length > 2) await marks.shift();
          }
          await Promise.all(marks);
        }
        const rate = n / ((performance.now() - t0) / 1000);
        const c = await countPublished(db.sequelize, TABLE);
        console.log(`  ${mode}: ${rate.toFixed(0)} events/s (${c.published} of ${n} published)`);
      }
      await o.close();
    }
  } finally {
    await emu.stop();
    await db.close();
  }
}

async function profileDrain(n: number): Promise<void> {
  const db = await createBenchDb('mysql');
  const emu = await EmulatorProcess.start('users');
  const session = new Session();
  session.connect();
  try {
    const { o, reset } = await backlogOutbox(db, emu, n);
    const profiled = async (side: string, run: () => Promise<void>, prepare?: () => Promise<void>) => {
      await reset();
      await prepare?.();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      const t0 = performance.now();
      await run();
      const rate = n / ((performance.now() - t0) / 1000);
      const { profile } = await session.post('Profiler.stop');
      console.log(`\n${side}: ${rate.toFixed(0)} events/s while profiled\n${summarizeProfile(profile as unknown as Profile, n, 20, 'event')}`);
    };
    await profiled('the retry pass, defaults (claim 500, row locks)', async () => {
      while ((await o.runPass('retry-by-database')) > 0);
    });
    const leased = await backlogOutbox(db, emu, n, { relayUnderRowLocks: false });
    await profiled('the retry pass with leases (claim 500)', async () => {
      while ((await leased.o.runPass('retry-by-database')) > 0);
    });
    await leased.o.close();
    const store = internalsOf(o).store;
    let all: Awaited<ReturnType<typeof store.find>> = [];
    await profiled(
      "figure 3's limit (the rows read beforehand, then sendMessages: no claim, no mark)",
      async () => {
        for (let i = 0; i < all.length; i += 500) await sendMessages(o.publisher, all.slice(i, i + 500), { bulk: true, batchSize: 100, maxBatchBytes: o.tuning.maxBatchBytes });
      },
      async () => {
        const ids = (await db.sequelize.query(`SELECT event_id FROM ${TABLE}`, { type: QueryTypes.SELECT })) as Array<{ event_id: string }>;
        all = await store.find(ids.map((r) => r.event_id));
      },
    );
    await o.close();
  } finally {
    session.disconnect();
    await emu.stop();
    await db.close();
  }
}

const run = process.argv.includes('--profile') ? profileDrain(Number(process.argv[2] ?? 100_000)) : main();
run.catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
