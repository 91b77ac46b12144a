/**
 * Figure 1, write path: requests/s of POST /register with the outbox (one event per request,
 * published on commit to the emulator) over the same handler without events, 32 concurrent
 * clients on loopback. Target: ratio >= 0.85. On MariaDB also against the naive dual write (the
 * handler, then a DaprClient publish after COMMIT; target >= 1.0), with the service's CPU per
 * request added over the bare transaction (target <= 0.4 ms).
 *
 * One more side on MariaDB, the cost of the OpenTelemetry hooks with `@opentelemetry/api`
 * installed and no SDK registered: the same outbox with the API turned on, over the outbox without
 * it. Target: ratio >= 0.98.
 */
import { createServer } from 'node:http';
import * as otelApi from '@opentelemetry/api';
import { DaprPublisher } from '../src';
import { type Publisher } from '../src/extend';
import { createBenchDb, POOL_MAX, type DbKind } from './support/db';
import { EmulatorProcess } from './support/emulator';
import { dbLabel, type BenchContext, type FigureResult, type FigureRow } from './support/figure';
import { close, closedLoop, listen } from './support/load';
import { bareService, naiveService, outboxService, registration } from './support/services';
import { cpuPer, databasePid, sampleCpu } from './support/cpu';
import { alternate, median, round, medianOfRecords } from './support/stats';
import { useOtelApi } from '../src/core/telemetry/otel-api';

const CONCURRENCY = 32;
const TARGET = 0.85;
const NAIVE_TARGET = 1.0;
const ADDED_CPU_TARGET_MS = 0.4;
const OTEL_TARGET = 0.98;

export async function writePath(ctx: BenchContext): Promise<FigureResult> {
  const rows: FigureRow[] = [];
  const data: Record<string, unknown> = { concurrency: CONCURRENCY, target: TARGET };
  for (const kind of ctx.dbs) {
    const r = await measure(ctx, kind);
    data[kind] = r;
    rows.push({
      figure: '1',
      what: 'write path, req/s (outbox / bare tx)',
      db: kind,
      measured: `${r.outboxRps} req/s`,
      baseline: `${r.bareRps} req/s`,
      result: `ratio ${r.ratio}`,
      target: `>= ${TARGET}`,
      met: ctx.quick ? null : r.ratio >= TARGET,
    });
    if (r.naiveRatio !== undefined) {
      rows.push({
        figure: '1',
        what: 'write path, req/s (outbox / naive dual write)',
        db: kind,
        measured: `${r.outboxRps} req/s`,
        baseline: `${r.naiveRps} req/s`,
        result: `ratio ${r.naiveRatio}`,
        target: `>= ${NAIVE_TARGET}`,
        met: ctx.quick ? null : r.naiveRatio >= NAIVE_TARGET,
      });
    }
    if (kind === 'mysql') {
      rows.push({
        figure: '1',
        what: 'write path, service CPU per request added over bare tx',
        db: kind,
        measured: `${r.cpuMsPerRequest.outbox?.service ?? '-'} ms`,
        baseline: `${r.cpuMsPerRequest.bare?.service ?? '-'} ms`,
        result: `+${r.addedServiceCpuMs} ms`,
        target: `<= ${ADDED_CPU_TARGET_MS} ms`,
        met: ctx.quick ? null : r.addedServiceCpuMs <= ADDED_CPU_TARGET_MS,
      });
    }
    if (r.otelNoSdkRatio !== undefined) {
      rows.push({
        figure: '1',
        what: 'write path, req/s (OpenTelemetry API, no SDK / outbox)',
        db: kind,
        measured: `${r.otelNoSdkRps} req/s`,
        baseline: `${r.outboxRps} req/s`,
        result: `ratio ${r.otelNoSdkRatio}`,
        target: `>= ${OTEL_TARGET}`,
        met: ctx.quick ? null : r.otelNoSdkRatio >= OTEL_TARGET,
      });
    }
  }
  return { key: 'write_path', rows, data };
}

type Side = 'outbox' | 'bare' | 'naive' | 'noPublish' | 'otelNoSdk';

/** A publisher that accepts everything at once: the outbox's database work without the sidecar. */
const acceptAll: Publisher = { pubsubName: 'pubsub', publish: async () => {}, publishBulk: async () => ({ failed: [] }) };

async function measure(ctx: BenchContext, kind: DbKind) {
  // SQLite has one writer at a time: fewer rounds tell the same story.
  const rounds = ctx.quick ? 1 : kind === 'mysql' ? 4 : 3;
  const durationMs = ctx.quick ? 500 : 3000;
  const maxRequests = ctx.quick ? 2000 : 100_000;
  // On MariaDB, the naive dual write; and in full runs a diagnostic side: the outbox with a
  // publisher that does nothing, which splits the outbox's cost into its database part and its
  // publish-to-sidecar part. Also on MariaDB, the outbox's own server with the OpenTelemetry API
  // turned on for its rounds.
  const sides: Side[] = kind === 'mysql' ? (ctx.quick ? ['outbox', 'bare', 'naive', 'otelNoSdk'] : ['outbox', 'bare', 'naive', 'noPublish', 'otelNoSdk']) : ['outbox', 'bare'];
  const db = await createBenchDb(kind);
  const emu = await EmulatorProcess.start('users');
  const svc = await outboxService(db.sequelize, new DaprPublisher({ daprPort: emu.port }));
  const noPublish = await outboxService(db.sequelize, acceptAll, { tables: { outbox: 'np_event_log', inbox: 'np_inbox', migrations: 'np_migrations' } });
  const naive = await naiveService(db.sequelize, emu.port);
  const servers = { outbox: createServer(svc.app), bare: createServer(await bareService(db.sequelize)), naive: createServer(naive.app), noPublish: createServer(noPublish.app) };
  const ports = { outbox: await listen(servers.outbox), bare: await listen(servers.bare), naive: await listen(servers.naive), noPublish: await listen(servers.noPublish) };
  const portOf = (side: Side) => (side === 'otelNoSdk' ? ports.outbox : ports[side]);
  const errors: Record<Side, number> = { outbox: 0, bare: 0, naive: 0, noPublish: 0, otelNoSdk: 0 };
  let firstError: string | undefined;
  try {
    const pids = { service: process.pid, emulator: emu.pid, mariadb: kind === 'mysql' ? databasePid() : undefined };
    const cpu: Record<Side, Array<Record<string, number>>> = { outbox: [], bare: [], naive: [], noPublish: [], otelNoSdk: [] };
    const run = async (side: Side, ms: number) => {
      // Installed, no SDK registered: the API's no-op tracer and meter. Every other side runs as
      // if the package were not installed.
      useOtelApi(side === 'otelNoSdk' ? otelApi : null);
      const before = sampleCpu(pids);
      const r = await closedLoop({ port: portOf(side), path: '/register', concurrency: CONCURRENCY, durationMs: ms, maxRequests, body: registration });
      errors[side] += r.errors;
      firstError ??= r.firstError;
      // The dispatcher's publishes and marks of this round finish before the next side starts,
      // so no side pays for another's background work.
      await svc.outbox.drain();
      await noPublish.outbox.drain();
      await emu.idle();
      cpu[side].push(cpuPer(before, sampleCpu(pids), Math.max(1, r.completed)));
      await emu.clearRecords();
      return r.rps;
    };
    // Warm-up (JIT, pools, the emulator's sockets); not counted.
    for (const side of sides) await run(side, ctx.quick ? 200 : 1500);
    for (const side of sides) {
      errors[side] = 0;
      cpu[side].length = 0;
    }
    // SQLite comes second: MariaDB leaves it 25 s of the figure's budget.
    const until = kind === 'mysql' && ctx.dbs.includes('sqlite') ? ctx.until - 25_000 : ctx.until;
    const rps = await alternate(rounds, sides, (side) => run(side, durationMs), { until });
    const m = Object.fromEntries(sides.map((side) => [side, median(rps[side])])) as Record<Side, number>;
    const stats = await svc.outbox.stats();
    const cpuMsPerRequest = Object.fromEntries(sides.map((side) => [side, medianOfRecords(cpu[side])])) as Partial<Record<Side, Record<string, number>>>;
    const result = {
      rounds: rps.outbox.length,
      durationMs,
      poolMax: POOL_MAX,
      outboxRps: round(m.outbox),
      bareRps: round(m.bare),
      ratio: round(m.outbox / m.bare),
      ...(m.naive === undefined ? {} : { naiveRps: round(m.naive), naiveRatio: round(m.outbox / m.naive) }),
      ...(m.noPublish === undefined ? {} : { noPublishRps: round(m.noPublish), noPublishRatio: round(m.noPublish / m.bare) }),
      ...(m.otelNoSdk === undefined ? {} : { otelNoSdkRps: round(m.otelNoSdk), otelNoSdkRatio: round(m.otelNoSdk / m.outbox) }),
      // The service's CPU per request over the bare transaction's (the load generator shares the
      // process and costs both sides the same).
      addedServiceCpuMs: round((cpuMsPerRequest.outbox?.service ?? NaN) - (cpuMsPerRequest.bare?.service ?? NaN)),
      perRound: Object.fromEntries(sides.map((side) => [side, rps[side].map((v) => round(v))])),
      errors,
      firstError,
      // Where the time goes: CPU milliseconds per request of each process (median over rounds).
      cpuMsPerRequest,
      // Every committed event reached the emulator and was marked: the outbox side did its whole job.
      outboxRowsNotPublished: stats.notPublished + stats.inProgress + stats.publishedFailed + stats.terminalFailed,
    };
    ctx.log(`  fig 1 ${dbLabel(kind)}: ${JSON.stringify({ outbox: result.outboxRps, bare: result.bareRps, naive: result.naiveRps, noPublish: result.noPublishRps, otelNoSdk: result.otelNoSdkRps })} req/s, ratio ${result.ratio} (rounds ${JSON.stringify(result.perRound)}, errors ${JSON.stringify(errors)}, CPU ms/req ${JSON.stringify(result.cpuMsPerRequest)})`);
    return result;
  } finally {
    useOtelApi(undefined);
    for (const server of Object.values(servers)) await close(server);
    await svc.outbox.close();
    await noPublish.outbox.close();
    naive.client.stop().catch(() => undefined);
    await emu.stop();
    await db.close();
  }
}
