/**
 * Figure 3, relay drain: 100,000 pending rows, the emulator accepting; events/s drained by the
 * database retry pass (claim a batch with SKIP LOCKED, bulk-publish it, mark it) on 1 instance
 * and on 3 instances (separate Sequelize pools, one process), over the raw publish rate of the
 * same publisher with no database (the limit). Targets, with the library's defaults on MariaDB:
 * 1 instance >= 0.7 of the limit, 3 instances >= 0.9 of it.
 *
 * The pass is run directly (`outbox.runPass('retry-by-database')`) in a loop until it claims
 * nothing: the drain speed, without waiting for the schedule's interval.
 */
import { DaprPublisher, createOutbox, type Outbox, type OutboxTuning } from '../src';
import { DEFAULTS, silentLogger, type OutboxMessage } from '../src/extend';
import { sendMessages } from '../src/core/send';
import { createBenchDb, type BenchDb, type DbKind } from './support/db';
import { cpuPer, databasePid, sampleCpu } from './support/cpu';
import { EmulatorProcess } from './support/emulator';
import { dbLabel, type BenchContext, type FigureResult, type FigureRow } from './support/figure';
import { countPublished, eventContent, pendingRowsSql, timeCalls } from './support/rows';
import { alternate, median, round, medianOfRecords } from './support/stats';
import { internalsOf } from './support/services';

const TARGET = { one: 0.7, three: 0.9 };
const TABLE = 'integration_event_log';

/**
 * The library's defaults (retryBatchSize 500, batchSize 100, bulk on), and MASA's claim of 100: a
 * pass over a backlog goes batch after batch, so the claim size sets how many round trips each
 * event shares. The other configurations run on MariaDB only, with fewer rounds, to keep the whole
 * bench under 10 minutes.
 */
const CONFIGS: Array<{ key: string; name: string; tuning: OutboxTuning; kinds: DbKind[] }> = [
  { key: 'defaults', name: `defaults (claim ${DEFAULTS.retryBatchSize}, bulk ${DEFAULTS.batchSize})`, tuning: {}, kinds: ['mysql', 'sqlite'] },
  { key: 'claim100', name: "MASA's claim (100), bulk 100", tuning: { retryBatchSize: 100, batchSize: 100 }, kinds: ['mysql'] },
  // Leased claims (a claim UPDATE and a mark UPDATE per row) against the defaults' relay under row
  // locks (one UPDATE per row).
  { key: 'leases', name: 'defaults with leases (relayUnderRowLocks: false)', tuning: { relayUnderRowLocks: false }, kinds: ['mysql'] },
];

type Side = 'one' | 'three' | 'raw';

export async function relayDrain(ctx: BenchContext): Promise<FigureResult> {
  const rows: FigureRow[] = [];
  const data: Record<string, unknown> = { target: TARGET };
  for (const kind of ctx.dbs) {
    const perConfig: Record<string, unknown> = {};
    for (const config of CONFIGS) {
      // --quick keeps the default configuration only: a smoke run, not a comparison.
      if (!config.kinds.includes(kind) || (ctx.quick && config !== CONFIGS[0])) continue;
      // The target's configuration gets the rounds (3, or 2 when the machine is slow: it leaves
      // 55 s of the budget to the rest); the larger claim and SQLite get what is left, 1 round at least.
      const main = kind === 'mysql' && config === CONFIGS[0];
      const rounds = ctx.quick ? 1 : main ? 3 : 2;
      const budget = main ? { until: ctx.until - 55_000, minRounds: 2 } : { until: ctx.until, minRounds: 1 };
      const r = await measure(ctx, kind, config.tuning, rounds, budget);
      perConfig[config.key] = { name: config.name, ...r };
      const one = r.eventsPerS.one;
      const judged = kind === 'mysql' && config.key === 'defaults';
      rows.push({
        figure: '3',
        what: `relay drain, events/s, 1 instance, ${config.name}`,
        db: kind,
        measured: `${one}/s`,
        baseline: `${r.eventsPerS.raw}/s raw`,
        result: `${r.ratioToLimit.one} of limit`,
        target: judged ? `>= ${TARGET.one}` : '-',
        met: ctx.quick || !judged ? null : r.ratioToLimit.one >= TARGET.one,
      });
      if (r.eventsPerS.three !== undefined) {
        rows.push({
          figure: '3',
          what: `relay drain, events/s, 3 instances, ${config.name}`,
          db: kind,
          measured: `${r.eventsPerS.three}/s`,
          baseline: `${r.eventsPerS.raw}/s raw`,
          result: `${r.ratioToLimit.three} of limit`,
          target: judged ? `>= ${TARGET.three}` : '-',
          met: ctx.quick || !judged ? null : r.ratioToLimit.three! >= TARGET.three,
        });
      }
    }
    data[kind] = perConfig;
  }
  return { key: 'relay_drain', rows, data };
}

async function measure(ctx: BenchContext, kind: DbKind, tuning: OutboxTuning, rounds: number, budget: { until: number; minRounds: number }) {
  const count = ctx.quick ? 1000 : 100_000;
  // SQLite: one process owns the file, so "3 instances" is not a deployment; and fewer rounds.
  const sides: Side[] = kind === 'mysql' ? ['one', 'three', 'raw'] : ['one', 'raw'];
  const db = await createBenchDb(kind);
  const emu = await EmulatorProcess.start('users');
  const outboxes: Outbox[] = [];
  const make = (sequelize = db.sequelize, i = 0) => {
    const o = createOutbox({ sequelize, publisher: new DaprPublisher({ daprPort: emu.port }), logger: silentLogger, instanceId: `bench-relay-${i}`, ...tuning });
    outboxes.push(o);
    return o;
  };
  const one = make();
  await one.migrate();
  const three = kind === 'mysql' ? [0, 1, 2].map((i) => make(db.another(), i + 1)) : [];
  const rawPublisher = new DaprPublisher({ daprPort: emu.port });
  const resolved = one.tuning;
  const pids = { service: process.pid, emulator: emu.pid, mariadb: kind === 'mysql' ? databasePid() : undefined };
  const phases: Record<string, Record<string, number>[]> = { one: [], three: [] };
  const cpu: Record<Side, Record<string, number>[]> = { one: [], three: [], raw: [] };
  const failures: string[] = [];

  const drain = async (side: Side, n: number): Promise<number> => {
    if (side === 'raw') {
      // A rate: a quarter of the events tell it as well as all of them, in a quarter of the time.
      const m = Math.ceil(n / 4);
      const before = sampleCpu(pids);
      const rate = await rawRate(rawPublisher, m, resolved.retryBatchSize, resolved.batchSize, resolved.bulk);
      cpu.raw.push(cpuPer(before, sampleCpu(pids), m / 1000));
      await emu.idle();
      await emu.clearRecords();
      return rate;
    }
    await reset(db, n);
    const instances = side === 'one' ? [one] : three;
    // Wall time per phase of the pass, summed over its batches (and over the instances for
    // 'three'): claim (BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, UPDATE, COMMIT) and mark (UPDATE
    // ... SET state = Published); the rest of a pass is the bulk publish to the sidecar and JS.
    const acc: Record<string, number> = {};
    // (Under row locks the claim, the publish and the mark are one relayLocked call: all 'claim'.)
    const undo = instances.flatMap((o) => [
      timeCalls(internalsOf(o).store, 'claimDue', acc, 'claimMs'),
      timeCalls(internalsOf(o).store, 'markPublished', acc, 'markMs'),
      timeCalls(internalsOf(o).store, 'relayLocked', acc, 'lockedMs'),
    ]);
    const before = sampleCpu(pids);
    const t0 = performance.now();
    await Promise.all(instances.map(async (o) => { while ((await o.runPass('retry-by-database')) > 0); }));
    const wallMs = performance.now() - t0;
    cpu[side].push(cpuPer(before, sampleCpu(pids), n / 1000));
    for (const u of undo) u();
    const claimMs = acc.claimMs ?? 0;
    const markMs = acc.markMs ?? 0;
    const phase = acc.lockedMs ? { lockedRelayMs: acc.lockedMs, wallMs } : { claimMs, markMs, publishAndRestMs: wallMs * instances.length - claimMs - markMs, wallMs };
    phases[side]!.push(Object.fromEntries(Object.entries(phase).map(([k, v]) => [k, Math.round(v)])));
    const seconds = wallMs / 1000;
    const c = await countPublished(db.sequelize, TABLE);
    if (c.published !== n) failures.push(`${side}: ${c.published} of ${n} published`);
    await emu.idle();
    await emu.clearRecords();
    return n / seconds;
  };

  try {
    prepared.clear();
    // Warm-up of every path on a small backlog; not counted.
    for (const side of sides) await drain(side, ctx.quick ? 100 : 5000);
    for (const k of Object.keys(cpu) as Side[]) cpu[k].length = 0;
    phases.one!.length = phases.three!.length = 0;
    const rates = await alternate(rounds, sides, (side) => drain(side, count), budget);
    const eventsPerS = Object.fromEntries(sides.map((s) => [s, round(median(rates[s]))])) as Record<Side, number>;
    const result = {
      rows: count,
      rounds: rates.one.length,
      tuning: { retryBatchSize: resolved.retryBatchSize, batchSize: resolved.batchSize, bulk: resolved.bulk, relayUnderRowLocks: resolved.relayUnderRowLocks },
      eventsPerS,
      ratioToLimit: { one: round(eventsPerS.one / eventsPerS.raw), three: eventsPerS.three === undefined ? undefined : round(eventsPerS.three / eventsPerS.raw) },
      perRound: Object.fromEntries(sides.map((s) => [s, rates[s].map((v) => round(v))])),
      // Wall time per phase over one drain (median round): where a batch cycle spends its time.
      phasesMs: { one: medianOfRecords(phases.one!), three: medianOfRecords(phases.three!) },
      // CPU ms per 1,000 events of each process (median round).
      cpuMsPer1000Events: Object.fromEntries(sides.map((s) => [s, medianOfRecords(cpu[s])])),
      failures,
    };
    ctx.log(`  fig 3 ${dbLabel(kind)} ${JSON.stringify(result.tuning)}: ${JSON.stringify(result.eventsPerS)} events/s; phases ${JSON.stringify(result.phasesMs)}; CPU ms/1000 events ${JSON.stringify(result.cpuMsPer1000Events)}${failures.length ? `; FAILURES ${failures.join(', ')}` : ''}`);
    return result;
  } finally {
    prepared.clear();
    for (const o of outboxes) await o.close();
    await rawPublisher.close();
    await emu.stop();
    await db.close();
  }
}

const prepared = new Map<string, string[]>();

/** Empties the outbox table and writes `n` due rows (the same rows every round). */
async function reset(db: BenchDb, n: number): Promise<void> {
  const key = `${db.url}:${n}`;
  let statements = prepared.get(key);
  if (!statements) prepared.set(key, (statements = pendingRowsSql(db.sequelize, TABLE, n)));
  await db.sequelize.query(db.kind === 'mysql' ? `TRUNCATE TABLE ${TABLE}` : `DELETE FROM ${TABLE}`, { raw: true });
  for (const sql of statements) await db.sequelize.query(sql, { raw: true });
}

/**
 * The limit: the same publisher and the same batching (claim-sized groups, bulk calls of
 * batchSize sent together, one group after another as the pass does), with no database.
 */
async function rawRate(publisher: DaprPublisher, n: number, group: number, batchSize: number, bulk: boolean): Promise<number> {
  const now = Date.now();
  const messages: OutboxMessage[] = Array.from({ length: n }, (_, i) => {
    const id = `raw-${now}-${i}`;
    return { id, topic: 'RegisterUserEvent', pubsubName: 'pubsub', eventTypeName: 'RegisterUserEvent', content: eventContent(id, 'RegisterUserEvent', now), creationTime: now };
  });
  const t0 = performance.now();
  for (let i = 0; i < n; i += group) {
    const outcome = await sendMessages(publisher, messages.slice(i, i + group), { bulk, batchSize, maxBatchBytes: DEFAULTS.maxBatchBytes });
    if (outcome.failed.length > 0) throw new Error(`raw publish failed: ${outcome.failed[0]!.error.message}`);
  }
  return n / ((performance.now() - t0) / 1000);
}

