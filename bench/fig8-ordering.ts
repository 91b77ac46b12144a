/**
 * Figure 8, ordering keys: events/s from commit to the sidecar's acceptance, keyed over 100 keys
 * against unkeyed, side by side in one run. 16 writers each commit events one per transaction
 * (`bus.publish` outside a request: a transaction of its own, then the dispatch); a side's time
 * runs until every event was accepted by the sidecar (the emulator, in its own process) and
 * marked Published.
 *
 * What keys cost: a keyed event takes its key's row lock in the writing transaction, goes out on
 * its own (never in a bulk call), and the next event of its key waits for it: each key is a chain
 * of publish, then a transaction that marks it and hands the next one its turn. With 100 keys,
 * 100 chains run side by side. No target: the issue asks for the ratio.
 */
import { DaprPublisher, createOutbox } from '../src';
import { silentLogger } from '../src/extend';
import { createBenchDb, type DbKind } from './support/db';
import { EmulatorProcess } from './support/emulator';
import { dbLabel, type BenchContext, type FigureResult, type FigureRow } from './support/figure';
import { countPublished } from './support/rows';
import { alternate, median, round } from './support/stats';

const TABLE = 'integration_event_log';
const KEYS = 100;
const WRITERS = 16;

type Side = 'unkeyed' | 'keyed';

export async function ordering(ctx: BenchContext): Promise<FigureResult> {
  const rows: FigureRow[] = [];
  const data: Record<string, unknown> = { keys: KEYS, writers: WRITERS };
  for (const kind of ctx.dbs) {
    const r = await measure(ctx, kind);
    data[kind] = r;
    rows.push({
      figure: '8',
      what: `keyed events/s (${KEYS} keys) over unkeyed, commit to sidecar`,
      db: kind,
      measured: `${r.eventsPerS.keyed}/s`,
      baseline: `${r.eventsPerS.unkeyed}/s unkeyed`,
      result: `${r.ratio}x`,
      target: '-',
      met: null,
    });
  }
  return { key: 'ordering', rows, data };
}

async function measure(ctx: BenchContext, kind: DbKind) {
  const n = ctx.quick ? 500 : 5000;
  const db = await createBenchDb(kind);
  const emu = await EmulatorProcess.start('users');
  const outbox = createOutbox({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: emu.port }), logger: silentLogger, instanceId: 'bench-ordering' });
  await outbox.migrate();
  const failures: string[] = [];
  let rounds = 0;

  const run = async (side: Side, count: number): Promise<number> => {
    rounds += 1;
    const prefix = `r${rounds}-${side}`;
    const before = (await countPublished(db.sequelize, TABLE)).published;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        for (let i = next++; i < count; i = next++) {
          const event = { id: `${prefix}-${i}`, topic: 'OrderEvent', orderId: i % KEYS, step: i };
          await outbox.bus.publish(event, side === 'keyed' ? { orderingKey: `order-${i % KEYS}` } : {});
        }
      }),
    );
    await outbox.drain();
    const seconds = (performance.now() - t0) / 1000;
    const published = (await countPublished(db.sequelize, TABLE)).published - before;
    if (published !== count) failures.push(`${prefix}: ${published} of ${count} published`);
    await emu.idle();
    await emu.clearRecords();
    return count / seconds;
  };

  try {
    for (const side of ['unkeyed', 'keyed'] as const) await run(side, ctx.quick ? 100 : 1000);
    const rates = await alternate(ctx.quick ? 1 : 3, ['unkeyed', 'keyed'] as const, (side) => run(side, n), { until: ctx.until, minRounds: 1 });
    const eventsPerS = { unkeyed: round2(median(rates.unkeyed)), keyed: round2(median(rates.keyed)) };
    const result = {
      events: n,
      rounds: rates.keyed.length,
      eventsPerS,
      ratio: round(eventsPerS.keyed / eventsPerS.unkeyed),
      perRound: { unkeyed: rates.unkeyed.map(round2), keyed: rates.keyed.map(round2) },
      failures,
    };
    ctx.log(`  fig 8 ${dbLabel(kind)}: ${JSON.stringify(result.eventsPerS)} events/s, keyed/unkeyed ${result.ratio}${failures.length ? `; FAILURES ${failures.join(', ')}` : ''}`);
    return result;
  } finally {
    await outbox.close();
    await emu.stop();
    await db.close();
  }
}

const round2 = (v: number) => Math.round(v);
