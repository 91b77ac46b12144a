/**
 * Figure 2, commit-to-delivery latency: p50 and p99 from the commit of POST /register to the
 * start of the subscriber's handler, through the emulator, at a steady rate (100 requests/s; 200
 * once per side as well). Each percentile is judged as a ratio to its floor measured in the same
 * run: p50 <= 1.3x, p99 <= 2x. (MASA's relay polls every 1 s; Dapr's own outbox takes >= 1 s.)
 *
 * Side by side, the floor: the same publisher publishing the same kind of event at the same rate
 * with no database, from the publish call to the handler start, to the same subscriber.
 *
 * Clocks: the service, the subscriber and the raw publisher run in this process, so both ends
 * read the same performance.now(). The commit instant is taken where the library learns of it:
 * the unit of work calls `dispatcher.dispatch(events)` right after COMMIT returned, so the bench
 * wraps that method to stamp each event id.
 */
import { Agent, createServer } from 'node:http';
import express from 'express';
import { createSubscriptionRouter, DaprPublisher } from '../src';
import { runMigrations, type OutboxMessage } from '../src/extend';
import { createBenchDb } from './support/db';
import { EmulatorProcess } from './support/emulator';
import type { BenchContext, FigureResult, FigureRow } from './support/figure';
import { close, listen, openLoop, post, sleep } from './support/load';
import { onCommitted, outboxService, registration, watchPublishes } from './support/services';
import { alternate, median, percentile, round } from './support/stats';

/**
 * The steady rate: half or less of what the write path serves on this 2-core machine (figure 1),
 * where the service, the emulator, the subscriber and MariaDB share the cores. HIGH_RATE, the
 * issue's example, is measured once per side next to it.
 */
const RATE = 100;
const HIGH_RATE = 200;
const TARGET = { p50: 1.3, p99: 2 };

export async function latency(ctx: BenchContext): Promise<FigureResult> {
  const db = await createBenchDb('mysql');
  const emu = await EmulatorProcess.start('users');
  const publisher = new DaprPublisher({ daprPort: emu.port });
  const rawPublisher = new DaprPublisher({ daprPort: emu.port });
  const svc = await outboxService(db.sequelize, publisher);

  // Stamps: event id -> instant the commit returned (outbox) or the publish call started (raw).
  const stamps = new Map<string, number>();
  const samples = new Map<string, number>();
  onCommitted(svc.outbox, (messages, t) => {
    for (const m of messages) stamps.set(m.id, t);
  });
  // The library's own share: from the commit to the call of the publisher (the dispatcher's
  // hand-off), as opposed to the transport and the subscriber.
  const handOff: number[] = [];
  watchPublishes(publisher, {
    called: (ids, t) => {
      for (const id of ids) {
        const t0 = stamps.get(id);
        if (t0 !== undefined) handOff.push(t - t0);
      }
    },
  });

  // The subscriber: another service (its own pool) receiving through the subscription router,
  // inbox on, as a user would run it. The handler only notes when it started.
  const subPool = db.another();
  await runMigrations(subPool);
  const router = createSubscriptionRouter({ sequelize: subPool, appApiToken: null, consumer: 'notifications' });
  const onEvent = (_data: unknown, c: { id: string }) => {
    const t = performance.now();
    const t0 = stamps.get(c.id);
    if (t0 !== undefined) {
      samples.set(c.id, t - t0);
      stamps.delete(c.id);
    }
  };
  router.topic('pubsub', 'RegisterUserEvent', onEvent);
  router.topic('pubsub', 'RawEvent', onEvent);
  const sub = express();
  sub.use(router);
  const subServer = createServer(sub);
  const subPort = await listen(subServer);
  const svcServer = createServer(svc.app);
  const svcPort = await listen(svcServer);
  await emu.attachApp('notifications', `http://127.0.0.1:${subPort}`);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });

  let rawSeq = 0;
  const sides = {
    outbox: (_i: number) =>
      post(agent, svcPort, '/register', registration()).then((a) => {
        if (a.status !== 201) throw new Error(`POST /register answered ${a.status} ${a.body.slice(0, 200)}`);
      }),
    raw: async (_i: number) => {
      const id = `raw-${process.pid}-${++rawSeq}`;
      const m: OutboxMessage = { id, topic: 'RawEvent', pubsubName: 'pubsub', eventTypeName: 'RawEvent', content: JSON.stringify({ id, topic: 'RawEvent', account: 'u', mobile: '13800000000' }), creationTime: Date.now() };
      stamps.set(id, performance.now());
      await rawPublisher.publish(m);
    },
  };
  type Side = 'outbox' | 'raw';
  // One measurement at `rate`: rounds alternating the two sides, `count` events per round.
  const measureAt = async (rate: number, rounds: number, count: number, until?: number) => {
    const errors = { outbox: 0, raw: 0 };
    const lost = { outbox: 0, raw: 0 };
    const p50s = { outbox: [] as number[], raw: [] as number[] };
    const all = { outbox: [] as number[], raw: [] as number[] };
    const requestMs: number[] = [];
    handOff.length = 0;
    const run = async (side: Side, n: number, keep: boolean) => {
      samples.clear();
      const call = side === 'outbox'
        ? async (i: number) => {
            const t0 = performance.now();
            await sides.outbox(i);
            if (keep) requestMs.push(performance.now() - t0);
          }
        : sides.raw;
      const r = await openLoop(rate, n, call);
      // Every delivery of the round arrives before the next round starts (or is counted lost).
      const deadline = Date.now() + 10_000;
      while (samples.size < n - r.errors && Date.now() < deadline) await sleep(20);
      await svc.outbox.drain();
      await emu.idle();
      await emu.clearRecords();
      const values = [...samples.values()];
      stamps.clear();
      if (keep) {
        errors[side] += r.errors;
        lost[side] += n - r.errors - values.length;
        p50s[side].push(percentile(values, 50));
        all[side].push(...values);
      }
      return percentile(values, 99);
    };
    const p99s = await alternate(rounds, ['outbox', 'raw'] as const, (side) => run(side, count, true), { until });
    const side = (x: Side) => ({
      p50Ms: round(median(p50s[x])),
      p99Ms: round(median(p99s[x])),
      pooledP99Ms: round(percentile(all[x], 99)),
      maxMs: round(Math.max(...all[x])),
      perRound: { p50: p50s[x].map((v) => round(v)), p99: p99s[x].map((v) => round(v)) },
      samples: all[x].length,
      errors: errors[x],
      lost: lost[x],
    });
    // The request itself (POST /register, answered after COMMIT): when it grows far past a few
    // milliseconds, the offered rate is more than the machine serves and every figure queues.
    return { ratePerS: rate, rounds: p50s.outbox.length, perRound: count, outbox: side('outbox'), raw: side('raw'), registerP50Ms: round(percentile(requestMs, 50)), registerP99Ms: round(percentile(requestMs, 99)), commitToPublishCallP50Ms: round(percentile(handOff, 50)), commitToPublishCallP99Ms: round(percentile(handOff, 99)) };
  };

  try {
    // Warm-up of both paths; not counted.
    await measureAt(RATE, 1, ctx.quick ? 50 : 200);
    const main = await measureAt(RATE, ctx.quick ? 1 : 4, ctx.quick ? 100 : RATE * 4, ctx.until - 12_000);
    // The rate the issue suggests, once per side: on this 2-core machine it is near saturation
    // (figure 1), so it shows queueing more than the path's own latency.
    const high = ctx.quick ? undefined : await measureAt(HIGH_RATE, 1, HIGH_RATE * 3);
    // Each percentile over its floor (medians over rounds of both).
    const ratio = { p50: round(main.outbox.p50Ms / main.raw.p50Ms), p99: round(main.outbox.p99Ms / main.raw.p99Ms) };
    const data = { subscriber: 'createSubscriptionRouter (inbox on), its own pool', target: TARGET, ratio, ...main, ...(high ? { atHighRate: high } : {}) };
    ctx.log(`  fig 2 at ${RATE}/s: outbox p50 ${main.outbox.p50Ms} ms p99 ${main.outbox.p99Ms} ms; raw publish p50 ${main.raw.p50Ms} ms p99 ${main.raw.p99Ms} ms; POST /register p50 ${main.registerP50Ms} ms; commit -> publish call p50 ${main.commitToPublishCallP50Ms} ms p99 ${main.commitToPublishCallP99Ms} ms (${JSON.stringify({ outbox: main.outbox.perRound, raw: main.raw.perRound })})`);
    if (high) ctx.log(`  fig 2 at ${HIGH_RATE}/s: outbox p50 ${high.outbox.p50Ms} ms p99 ${high.outbox.p99Ms} ms; raw publish p50 ${high.raw.p50Ms} ms p99 ${high.raw.p99Ms} ms; POST /register p50 ${high.registerP50Ms} ms`);
    const met = (v: number, t: number) => (ctx.quick ? null : v <= t);
    const rows: FigureRow[] = [
      { figure: '2', what: `commit -> handler start, p50, ${RATE} req/s (outbox / raw publish)`, db: 'mysql', measured: `${main.outbox.p50Ms} ms`, baseline: `${main.raw.p50Ms} ms`, result: `${ratio.p50}x floor`, target: `<= ${TARGET.p50}x`, met: met(ratio.p50, TARGET.p50) },
      { figure: '2', what: `commit -> handler start, p99, ${RATE} req/s (outbox / raw publish)`, db: 'mysql', measured: `${main.outbox.p99Ms} ms`, baseline: `${main.raw.p99Ms} ms`, result: `${ratio.p99}x floor`, target: `<= ${TARGET.p99}x`, met: met(ratio.p99, TARGET.p99) },
    ];
    if (high) {
      rows.push({ figure: '2', what: `commit -> handler start, p50 / p99, ${HIGH_RATE} req/s, 1 round`, db: 'mysql', measured: `${high.outbox.p50Ms} / ${high.outbox.p99Ms} ms`, baseline: `${high.raw.p50Ms} / ${high.raw.p99Ms} ms`, result: `POST p50 ${high.registerP50Ms} ms`, target: '-', met: null });
    }
    return { key: 'latency', data, rows };
  } finally {
    agent.destroy();
    await close(svcServer);
    await close(subServer);
    await svc.outbox.close();
    await rawPublisher.close();
    await emu.stop();
    await db.close();
  }
}
