/**
 * Figure 7, side by side with pg-transactional-outbox 0.5.7 (the most used Node outbox, on
 * PostgreSQL only) in its polling mode, on one PostgreSQL database and one sink (the emulator
 * in a process of its own), the two libraries measured in alternating rounds:
 *
 * - write path: requests/s of POST /register (a user row plus one outbox message in one
 *   transaction) from 32 clients, each library's relay running. Target: ours / peer >= 1.2.
 * - relay drain: 20,000 pending messages, from the commit that makes them visible to the last one
 *   marked, each relay running as configured below. Target: ours / peer >= 2.
 * - commit to publish: from the COMMIT of POST /register to the sink accepting the message, at
 *   100 requests/s, p50 and p99. Target: ours lower at both (the peer's polling interval is its
 *   floor).
 *
 * Both services are the same Express app and the same Sequelize model with a pool of 10; only
 * the outbox differs. Ours: the middleware's unit of work, published on commit. The peer: the
 * user created in a Sequelize transaction whose pg client stores the message with the peer's
 * `initializeMessageStorage`, as its README stores it on a client in a transaction; its polling
 * listener's message handler publishes each message to the sink with a DaprPublisher.
 */
import { createServer, Agent, type Server } from 'node:http';
import type { Express } from 'express';
import type { Sequelize } from 'sequelize';
import {
  DatabaseSetup,
  getDefaultLogger,
  getDisabledLogger,
  initializeMessageStorage,
  initializePollingMessageListener,
  type DatabaseClient,
  type GeneralMessageHandler,
  type PollingListenerConfig,
  type TransactionalMessage,
} from 'pg-transactional-outbox';
import { DaprPublisher } from '../src';
import { DEFAULTS } from '../src/extend';
import { createBenchDb, POOL_MAX, type BenchDb } from './support/db';
import { EmulatorProcess } from './support/emulator';
import type { BenchContext, FigureResult, FigureRow } from './support/figure';
import { close, closedLoop, listen, openLoop, post, sleep } from './support/load';
import { countPublished, pendingRowsSql } from './support/rows';
import { onCommitted, outboxService, registerApp, registration, RegisterUserEvent, watchPublishes } from './support/services';
import { alternate, median, percentile, round } from './support/stats';

const CONCURRENCY = 32;
const DRAIN_ROWS = 20_000;
const RATE = 100;
const TARGET = { writeRatio: 1.2, drainRatio: 2 };
const TABLE = 'integration_event_log';

/**
 * Ours: the library's defaults, with the database retry pass every 0.25 s (the peer's polling
 * interval) instead of every 60 s, so that both relays look for pending rows as often. The pass
 * claims 100 rows at a time with FOR UPDATE SKIP LOCKED and publishes them in bulk calls.
 */
const OURS = { failedRetryInterval: 0.25 };

/**
 * The peer, as its README sets up the outbox's polling listener: its table, its polling
 * function and its indexes from DatabaseSetup; the attempts and poisonous-message protections
 * off (the README's outbox example); messages stored with concurrency 'parallel' (so they are not
 * sent one at a time in one segment); the README example's polling interval (250 ms). The batch
 * size is how many messages are in flight at once; 5 is its default, 50 drained fastest here
 * (of 5, 20, 50 and 100), so the figure uses 50. Cleanup off: the bench empties the table
 * between rounds.
 */
const PEER = {
  schema: 'peer',
  table: 'outbox',
  nextMessagesFunctionName: 'next_outbox_messages',
  nextMessagesBatchSize: 50,
  nextMessagesPollingIntervalInMs: 250,
  nextMessagesLockInMs: 5000,
  enableMaxAttemptsProtection: false,
  enablePoisonousMessageProtection: false,
  messageCleanupIntervalInMs: 0,
  concurrency: 'parallel' as const,
};

type Name = 'ours' | 'peer';

/** One library's service and relay, as the rounds drive them. */
interface Side {
  port: number;
  /** Messages committed and not yet published and marked. */
  pending(): Promise<number>;
  /** Empties the outbox table, so every round starts from the same size. */
  empty(): Promise<void>;
  /** Commits `n` pending messages at once (one transaction): the relay sees all or none. */
  fill(n: number): Promise<void>;
  close(): Promise<void>;
}

/** Commit and acceptance instants per message id, both libraries alike. */
class Clock {
  readonly committed = new Map<string, number>();
  readonly samples: number[] = [];
  commit(id: string, t: number): void {
    this.committed.set(id, t);
  }
  accept(ids: readonly string[], t: number): void {
    for (const id of ids) {
      const t0 = this.committed.get(id);
      if (t0 === undefined) continue;
      this.samples.push(t - t0);
      this.committed.delete(id);
    }
  }
  reset(): void {
    this.committed.clear();
    this.samples.length = 0;
  }
}

export async function peerPg(ctx: BenchContext): Promise<FigureResult> {
  const db = await createBenchDb('postgres');
  const emu = await EmulatorProcess.start('users');
  const clock = new Clock();
  const sides = {} as Record<Name, Side>;
  try {
    sides.ours = await oursSide(db, emu, clock);
    sides.peer = await peerSide(db, emu, clock);

    // Warm-up: JIT, pools, sockets, and the peer listener's start-up ramp (its first
    // nextMessagesBatchSize polls take one message each). Not counted.
    for (const name of ['ours', 'peer'] as const) await drainOnce(sides[name], ctx.quick ? 100 : 2000);

    const write = await measureWrite(ctx, sides, emu);
    const drain = await measureDrain(ctx, sides, emu);
    const latency = await measureLatency(ctx, sides, emu, clock);

    const writeRatio = round(write.reqPerS.ours / write.reqPerS.peer);
    const drainRatio = round(drain.eventsPerS.ours / drain.eventsPerS.peer);
    const data = {
      peer: 'pg-transactional-outbox@0.5.7, polling listener',
      settings: {
        ours: { ...OURS, retryBatchSize: DEFAULTS.retryBatchSize, batchSize: DEFAULTS.batchSize, bulk: DEFAULTS.bulk, publishOnCommit: true, poolMax: POOL_MAX },
        peer: { ...PEER, handlerPoolMax: POOL_MAX, listenerPoolMax: POOL_MAX, publish: 'DaprPublisher.publish per message, in its message handler' },
      },
      writeRatio,
      drainRatio,
      latency: { ratePerS: RATE, ours: latency.ours, peer: latency.peer },
      target: TARGET,
      write,
      drain,
    };
    ctx.log(
      `  fig 7 PostgreSQL: write ${JSON.stringify(write.reqPerS)} req/s (ratio ${writeRatio}); drain ${JSON.stringify(drain.eventsPerS)} events/s (ratio ${drainRatio}); ` +
        `commit -> publish at ${RATE}/s ours p50 ${latency.ours.p50Ms} p99 ${latency.ours.p99Ms} ms, peer p50 ${latency.peer.p50Ms} p99 ${latency.peer.p99Ms} ms`,
    );
    const judged = (ok: boolean) => (ctx.quick ? null : ok);
    const rows: FigureRow[] = [
      { figure: '7', what: `write path, req/s, ${CONCURRENCY} clients, relay running (ours / pg-transactional-outbox)`, db: 'postgres', measured: `${write.reqPerS.ours} req/s`, baseline: `${write.reqPerS.peer} req/s`, result: `ratio ${writeRatio}`, target: `>= ${TARGET.writeRatio}`, met: judged(writeRatio >= TARGET.writeRatio) },
      { figure: '7', what: `relay drain of ${drain.rows.toLocaleString('en')} pending, events/s (ours / pg-transactional-outbox)`, db: 'postgres', measured: `${drain.eventsPerS.ours}/s`, baseline: `${drain.eventsPerS.peer}/s`, result: `ratio ${drainRatio}`, target: `>= ${TARGET.drainRatio}`, met: judged(drainRatio >= TARGET.drainRatio) },
      { figure: '7', what: `commit -> publish, p50, ${RATE} req/s (ours / pg-transactional-outbox)`, db: 'postgres', measured: `${latency.ours.p50Ms} ms`, baseline: `${latency.peer.p50Ms} ms`, result: `p50 ${latency.ours.p50Ms} ms`, target: 'ours lower', met: judged(latency.ours.p50Ms < latency.peer.p50Ms) },
      { figure: '7', what: `commit -> publish, p99, ${RATE} req/s (ours / pg-transactional-outbox)`, db: 'postgres', measured: `${latency.ours.p99Ms} ms`, baseline: `${latency.peer.p99Ms} ms`, result: `p99 ${latency.ours.p99Ms} ms`, target: 'ours lower', met: judged(latency.ours.p99Ms < latency.peer.p99Ms) },
    ];
    return { key: 'peer_pg', rows, data };
  } finally {
    for (const side of Object.values(sides)) await side.close();
    await emu.stop();
    await db.close();
  }
}

async function measureWrite(ctx: BenchContext, sides: Record<Name, Side>, emu: EmulatorProcess) {
  const rounds = ctx.quick ? 1 : 3;
  const durationMs = ctx.quick ? 300 : 3000;
  const errors: Record<Name, number> = { ours: 0, peer: 0 };
  let firstError: string | undefined;
  const run = async (name: Name, ms: number) => {
    const side = sides[name];
    await side.empty();
    const r = await closedLoop({ port: side.port, path: '/register', concurrency: CONCURRENCY, durationMs: ms, maxRequests: ctx.quick ? 2000 : 100_000, body: registration });
    errors[name] += r.errors;
    firstError ??= r.firstError;
    // Each relay finishes its round's messages before the other side starts: no side pays for
    // the other's background work.
    await settle(side, emu);
    return r.rps;
  };
  for (const name of ['ours', 'peer'] as const) await run(name, ctx.quick ? 150 : 1000);
  errors.ours = errors.peer = 0;
  const rps = await alternate(rounds, ['ours', 'peer'] as const, (name) => run(name, durationMs), { until: ctx.until - 60_000, minRounds: 1 });
  return {
    durationMs,
    rounds: rps.ours.length,
    reqPerS: { ours: round(median(rps.ours)), peer: round(median(rps.peer)) },
    perRound: { ours: rps.ours.map((v) => round(v)), peer: rps.peer.map((v) => round(v)) },
    errors,
    firstError,
  };
}

async function measureDrain(ctx: BenchContext, sides: Record<Name, Side>, emu: EmulatorProcess) {
  const rows = ctx.quick ? 300 : DRAIN_ROWS;
  const rates = await alternate(ctx.quick ? 1 : 2, ['ours', 'peer'] as const, async (name) => {
    const rate = await drainOnce(sides[name], rows);
    await settle(sides[name], emu);
    return rate;
  }, { until: ctx.until - 25_000, minRounds: 1 });
  return { rows, rounds: rates.ours.length, eventsPerS: { ours: round(median(rates.ours)), peer: round(median(rates.peer)) }, perRound: { ours: rates.ours.map((v) => round(v)), peer: rates.peer.map((v) => round(v)) } };
}

async function measureLatency(ctx: BenchContext, sides: Record<Name, Side>, emu: EmulatorProcess, clock: Clock) {
  const count = ctx.quick ? 30 : RATE * 4;
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const p50s: Record<Name, number[]> = { ours: [], peer: [] };
  const all: Record<Name, number[]> = { ours: [], peer: [] };
  const lost: Record<Name, number> = { ours: 0, peer: 0 };
  try {
    const p99s = await alternate(ctx.quick ? 1 : 3, ['ours', 'peer'] as const, async (name) => {
      const side = sides[name];
      await side.empty();
      clock.reset();
      const r = await openLoop(RATE, count, async () => {
        const answer = await post(agent, side.port, '/register', registration());
        if (answer.status !== 201) throw new Error(`POST /register answered ${answer.status} ${answer.body.slice(0, 200)}`);
      });
      const deadline = Date.now() + 10_000;
      while (clock.samples.length < count - r.errors && Date.now() < deadline) await sleep(20);
      const values = [...clock.samples];
      lost[name] += count - r.errors - values.length;
      p50s[name].push(percentile(values, 50));
      all[name].push(...values);
      await settle(side, emu);
      return percentile(values, 99);
    }, { until: ctx.until, minRounds: 1 });
    const of = (name: Name) => ({
      p50Ms: round(median(p50s[name])),
      p99Ms: round(median(p99s[name])),
      pooledP99Ms: round(percentile(all[name], 99)),
      perRound: { p50: p50s[name].map((v) => round(v)), p99: p99s[name].map((v) => round(v)) },
      samples: all[name].length,
      lost: lost[name],
    });
    return { ours: of('ours'), peer: of('peer') };
  } finally {
    agent.destroy();
  }
}

/** Commits `n` pending messages and times the relay until the last one is marked: events/s. */
async function drainOnce(side: Side, n: number): Promise<number> {
  await side.empty();
  await side.fill(n);
  const t0 = performance.now();
  await until(async () => (await side.pending()) === 0, 120_000, 10);
  return n / ((performance.now() - t0) / 1000);
}

/** Waits for the side's relay to publish everything, and for the sink to finish; empties its records. */
async function settle(side: Side, emu: EmulatorProcess): Promise<void> {
  await until(async () => (await side.pending()) === 0, 120_000, 25);
  await emu.idle();
  await emu.clearRecords();
}

async function until(check: () => Promise<boolean>, timeoutMs: number, pollMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not done within ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

async function serve(app: Express): Promise<{ server: Server; port: number }> {
  const server = createServer(app);
  return { server, port: await listen(server) };
}

/** Ours: the bench's outbox service (figure 1's), its relay started. */
async function oursSide(db: BenchDb, emu: EmulatorProcess, clock: Clock): Promise<Side> {
  const publisher = new DaprPublisher({ daprPort: emu.port });
  watchPublishes(publisher, { accepted: (ids, t) => clock.accept(ids, t) });
  const svc = await outboxService(db.sequelize, publisher, OURS);
  onCommitted(svc.outbox, (messages, t) => {
    for (const m of messages) clock.commit(m.id, t);
  });
  svc.outbox.start();
  const { server, port } = await serve(svc.app);
  const prepared = new Map<number, string[]>();
  return {
    port,
    pending: async () => (await countPublished(db.sequelize, TABLE)).pending,
    empty: () => truncate(db.sequelize, TABLE),
    async fill(n) {
      if (!prepared.has(n)) prepared.set(n, pendingRowsSql(db.sequelize, TABLE, n));
      await db.sequelize.transaction(async (transaction) => {
        for (const sql of prepared.get(n)!) await db.sequelize.query(sql, { raw: true, transaction });
      });
    },
    async close() {
      await close(server);
      await svc.outbox.close();
    },
  };
}

/** The peer: its outbox table and polling listener, the same app and model on a pool of its own. */
async function peerSide(db: BenchDb, emu: EmulatorProcess, clock: Clock): Promise<Side> {
  const sequelize = db.another();
  const url = new URL(db.url);
  const database = url.pathname.slice(1);
  const setup = { outboxOrInbox: 'outbox' as const, database, schema: PEER.schema, table: PEER.table, listenerRole: url.username, nextMessagesName: PEER.nextMessagesFunctionName };
  for (const sql of [DatabaseSetup.dropAndCreateTable(setup), DatabaseSetup.createPollingFunction(setup), DatabaseSetup.setupPollingIndexes(setup)]) {
    await sequelize.query(sql, { raw: true });
  }
  const settings = {
    dbSchema: PEER.schema,
    dbTable: PEER.table,
    nextMessagesFunctionSchema: PEER.schema,
    nextMessagesFunctionName: PEER.nextMessagesFunctionName,
    nextMessagesBatchSize: PEER.nextMessagesBatchSize,
    nextMessagesPollingIntervalInMs: PEER.nextMessagesPollingIntervalInMs,
    nextMessagesLockInMs: PEER.nextMessagesLockInMs,
    enableMaxAttemptsProtection: PEER.enableMaxAttemptsProtection,
    enablePoisonousMessageProtection: PEER.enablePoisonousMessageProtection,
    messageCleanupIntervalInMs: PEER.messageCleanupIntervalInMs,
  };
  // PEER_LOG=1 prints the peer's own log (pino), to see what its listener does.
  const logger = process.env.PEER_LOG ? getDefaultLogger('peer') : getDisabledLogger();
  const store = initializeMessageStorage({ outboxOrInbox: 'outbox', settings }, logger);

  const { app } = await registerApp(sequelize, async (User, account, mobile) => {
    const event = new RegisterUserEvent(account, mobile);
    const message: TransactionalMessage = { id: event.id, aggregateType: 'user', aggregateId: account, messageType: event.topic, concurrency: PEER.concurrency, payload: event };
    await sequelize.transaction(async (transaction) => {
      await User.create({ account, mobile }, { transaction });
      await store(message, (transaction as unknown as { connection: DatabaseClient }).connection);
    });
    clock.commit(event.id, performance.now());
  });
  const { server, port } = await serve(app);

  const publisher = new DaprPublisher({ daprPort: emu.port });
  watchPublishes(publisher, { accepted: (ids, t) => clock.accept(ids, t) });
  const handler: GeneralMessageHandler = {
    handle: async (m: TransactionalMessage) => {
      const created = Date.parse(m.createdAt ?? '') || Date.now();
      await publisher.publish({ id: m.id, topic: m.messageType, pubsubName: 'pubsub', eventTypeName: m.messageType, content: JSON.stringify(m.payload), creationTime: created });
    },
  };
  const connection = { host: url.hostname, port: Number(url.port || 5432), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) || undefined, database, max: POOL_MAX };
  const config: PollingListenerConfig = { outboxOrInbox: 'outbox', dbListenerConfig: connection, dbHandlerConfig: connection, settings };
  const [shutdown] = initializePollingMessageListener(config, handler, logger);

  const t = `${PEER.schema}.${PEER.table}`;
  return {
    port,
    pending: async () => {
      const [rows] = (await sequelize.query(`SELECT COUNT(*) AS n FROM ${t} WHERE processed_at IS NULL AND abandoned_at IS NULL`, { raw: true })) as [Array<{ n: unknown }>, unknown];
      return Number(rows[0]?.n ?? 0);
    },
    empty: () => truncate(sequelize, t),
    async fill(n) {
      // One statement: the rows become visible together. The payload is the same event body as ours.
      await sequelize.query(
        `INSERT INTO ${t} (id, aggregate_type, aggregate_id, message_type, concurrency, payload, created_at) ` +
          `SELECT id, 'user', 'u-' || k, 'RegisterUserEvent', '${PEER.concurrency}', ` +
          `jsonb_build_object('account', 'u-' || left(id::text, 8), 'mobile', '13800000000', 'id', id, 'creationTime', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'topic', 'RegisterUserEvent'), clock_timestamp() ` +
          `FROM (SELECT gen_random_uuid() AS id, k FROM generate_series(1, ${Math.trunc(n)}) AS g(k)) AS s`,
        { raw: true },
      );
    },
    async close() {
      await close(server);
      await shutdown();
      await publisher.close();
    },
  };
}

async function truncate(sequelize: Sequelize, table: string): Promise<void> {
  await sequelize.query(`TRUNCATE TABLE ${table}`, { raw: true, transaction: null });
}
