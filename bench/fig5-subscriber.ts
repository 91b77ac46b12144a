/**
 * Figure 5, subscriber throughput: deliveries/s through the subscription router (CloudEvent
 * unwrap + inbox + a handler doing one insert, in the delivery transactions the router groups)
 * over (a) a bare express route doing the same insert; (b) the router with its inbox off over
 * @dapr/dapr's DaprServer handling the same deliveries, and the service CPU per delivery of each;
 * (c) a bulk subscription (100 entries per delivery, inbox on) over single deliveries with the
 * inbox, in events/s. Targets: (a) >= 0.8; (b) >= 1.0, and CPU per delivery no more than
 * DaprServer's; (c) >= 3.
 *
 * The same CloudEvent bodies (as daprd sends them, each with its own id) are POSTed straight to
 * each app by 32 keep-alive clients: the sidecar is not part of what is measured. DaprServer
 * needs a sidecar to start; its client points at the emulator, which answers its health checks.
 */
import { Agent, createServer } from 'node:http';
import express from 'express';
import { DataTypes } from 'sequelize';
import { CommunicationProtocolEnum, DaprServer, LogLevel } from '@dapr/dapr';
import { createSubscriptionRouter } from '../src';
import { runMigrations } from '../src/extend';
import { createBenchDb } from './support/db';
import { EmulatorProcess } from './support/emulator';
import type { BenchContext, FigureResult } from './support/figure';
import { close, closedLoop, listen, send, LOOPBACK } from './support/load';
import { cpuPer, databasePid, sampleCpu } from './support/cpu';
import { alternate, median, round, medianOfRecords } from './support/stats';

const CONCURRENCY = 32;
const TARGET = 0.8;
const NO_INBOX_TARGET = 1.0;
const BULK_TARGET = 3;
/** Entries per bulk delivery (daprd's default maxMessagesCount), and bulk deliveries in flight. */
const BULK_SIZE = 100;
const BULK_CONCURRENCY = 4;
const TOPIC = 'BenchEvent';
const BULK_TOPIC = 'BenchBulkEvent';

type Side = 'router' | 'bare' | 'daprServer' | 'routerNoInbox' | 'bulk';

export async function subscriber(ctx: BenchContext): Promise<FigureResult> {
  const rounds = ctx.quick ? 1 : 4;
  const durationMs = ctx.quick ? 500 : 2500;
  const db = await createBenchDb('mysql');
  const emu = await EmulatorProcess.start('notifications');
  const s = db.sequelize;
  await runMigrations(s);
  // What each handler writes: one row per delivery.
  const Received = s.define('BenchReceived', { eventId: { type: DataTypes.STRING(64), allowNull: false }, account: { type: DataTypes.STRING(64), allowNull: false } }, { tableName: 'bench_received', timestamps: false });
  await Received.sync();
  const insert = (data: { id: string; account: string }) => Received.create({ eventId: data.id, account: data.account });

  // The library: inbox on (same database), the handler's insert joins the delivery's transaction.
  const router = createSubscriptionRouter({ sequelize: s, appApiToken: null, consumer: 'bench', logger: { warn() {}, error() {}, info() {}, debug() {} } });
  router.topic('pubsub', TOPIC, (data: { id: string; account: string }) => insert(data));
  const routerApp = express();
  routerApp.use(router);

  // (c) A bulk subscription on the same router: one transaction per bulk delivery.
  router.topic('pubsub', BULK_TOPIC, (data: { id: string; account: string }) => insert(data), { bulk: { maxMessagesCount: BULK_SIZE, maxAwaitDurationMs: 100 } });

  // (b) The router with the inbox off, which also splits the router's cost into its
  // HTTP/CloudEvent part and its inbox transaction.
  const noInbox = createSubscriptionRouter({ inbox: false, appApiToken: null, logger: { warn() {}, error() {}, info() {}, debug() {} } });
  noInbox.topic('pubsub', TOPIC, (data: { id: string; account: string }) => insert(data));
  const noInboxApp = express();
  noInboxApp.use(noInbox);

  // (a) The same insert on a bare express route: no inbox, no transaction.
  const bareApp = express();
  bareApp.use(express.json({ type: ['application/json', 'application/cloudevents+json'] }));
  bareApp.post('/bench-event', async (req, res) => {
    await insert((req.body as { data: { id: string; account: string } }).data);
    res.json({ status: 'SUCCESS' });
  });

  // (b) The SDK's own server.
  const quiet = { error() {}, warn() {}, info() {}, verbose() {}, debug() {} };
  const daprPort = await freePort();
  const daprServer = new DaprServer({
    serverHost: LOOPBACK,
    serverPort: String(daprPort),
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    clientOptions: { daprHost: LOOPBACK, daprPort: String(emu.port), communicationProtocol: CommunicationProtocolEnum.HTTP },
    logger: { level: LogLevel.Error, service: quiet },
  });
  await daprServer.pubsub.subscribe('pubsub', TOPIC, async (data: { id: string; account: string }) => {
    await insert(data);
  });
  await daprServer.start();

  const routerServer = createServer(routerApp);
  const bareServer = createServer(bareApp);
  const noInboxServer = createServer(noInboxApp);
  const routerPort = await listen(routerServer);
  const ports: Record<Side, number> = { router: routerPort, bare: await listen(bareServer), daprServer: daprPort, routerNoInbox: await listen(noInboxServer), bulk: routerPort };
  const paths: Record<Side, string> = {
    router: await routeOf(ports.router),
    bare: '/bench-event',
    daprServer: await routeOf(ports.daprServer),
    routerNoInbox: await routeOf(ports.routerNoInbox),
    bulk: await routeOf(routerPort, BULK_TOPIC),
  };
  const sides: Side[] = ['router', 'bare', 'daprServer', 'routerNoInbox', 'bulk'];
  const errors: Record<Side, number> = { router: 0, bare: 0, daprServer: 0, routerNoInbox: 0, bulk: 0 };
  const pids = { service: process.pid, mariadb: databasePid() };
  const cpu: Record<Side, Array<Record<string, number>>> = { router: [], bare: [], daprServer: [], routerNoInbox: [], bulk: [] };
  let firstError: string | undefined;
  let seq = 0;
  const body = () => cloudEvent(`evt-${process.pid}-${++seq}`);
  const bulkBody = () => bulkDelivery(Array.from({ length: BULK_SIZE }, () => `evt-${process.pid}-${++seq}`));
  /** Events (deliveries, or bulk entries) per second. */
  const run = async (side: Side, ms: number) => {
    const bulk = side === 'bulk';
    const before = sampleCpu(pids);
    const r = await closedLoop({
      port: ports[side],
      path: paths[side],
      concurrency: bulk ? BULK_CONCURRENCY : CONCURRENCY,
      durationMs: ms,
      maxRequests: 200_000,
      body: bulk ? bulkBody : body,
      headers: { 'content-type': bulk ? 'application/json' : 'application/cloudevents+json' },
      // RETRY and DROP answers are 200 too: only SUCCESS counts as a delivery (every entry's, in bulk).
      ok: bulk ? (status, text) => status === 200 && !text.includes('RETRY') && !text.includes('DROP') : (status, text) => status === 200 && text.includes('SUCCESS'),
    });
    const events = bulk ? BULK_SIZE : 1;
    cpu[side].push(cpuPer(before, sampleCpu(pids), Math.max(1, r.completed * events)));
    errors[side] += r.errors;
    firstError ??= r.firstError;
    return r.rps * events;
  };
  try {
    for (const side of sides) await run(side, ctx.quick ? 200 : 1500);
    for (const side of sides) {
      errors[side] = 0;
      cpu[side].length = 0;
    }
    const rps = await alternate(rounds, sides, (side) => run(side, durationMs), { until: ctx.until });
    const m = Object.fromEntries(sides.map((side) => [side, round(median(rps[side]))])) as Record<Side, number>;
    const [{ n }] = (await s.query('SELECT COUNT(*) AS n FROM integration_event_inbox', { raw: true }))[0] as Array<{ n: number }>;
    const cpuMsPerDelivery = Object.fromEntries(sides.map((side) => [side, medianOfRecords(cpu[side])])) as Record<Side, Record<string, number>>;
    const data = {
      concurrency: CONCURRENCY,
      rounds: rps.router.length,
      durationMs,
      // For `bulk`: events (entries) per second.
      deliveriesPerS: m,
      ratio: { vsBare: round(m.router / m.bare), vsDaprServer: round(m.router / m.daprServer), noInboxVsDaprServer: round(m.routerNoInbox / m.daprServer) },
      bulk: { size: BULK_SIZE, concurrency: BULK_CONCURRENCY, eventsPerS: m.bulk, ratioToSingle: round(m.bulk / m.router), target: BULK_TARGET },
      perRound: Object.fromEntries(Object.entries(rps).map(([k, v]) => [k, v.map((x) => round(x))])),
      errors,
      firstError,
      // Where the time goes: CPU milliseconds per delivery (per entry for `bulk`) of this process
      // (the apps and the load generator, the same for every side) and of MariaDB, median over rounds.
      cpuMsPerDelivery,
      inboxRows: Number(n),
      target: TARGET,
      noInboxTarget: NO_INBOX_TARGET,
    };
    ctx.log(
      `  fig 5: ${JSON.stringify(m)} events/s; router/bare ${data.ratio.vsBare}, router without inbox/DaprServer ${data.ratio.noInboxVsDaprServer}, bulk/single ${data.bulk.ratioToSingle} (${JSON.stringify(data.perRound)}, errors ${JSON.stringify(errors)}, CPU ms/delivery ${JSON.stringify(cpuMsPerDelivery)})`,
    );
    const serviceCpu = (side: Side) => cpuMsPerDelivery[side]?.service ?? NaN;
    const judged = (met: boolean) => (ctx.quick ? null : met);
    return {
      key: 'subscriber',
      data,
      rows: [
        { figure: '5', what: 'subscriber, deliveries/s (router / bare express)', db: 'mysql', measured: `${m.router}/s`, baseline: `${m.bare}/s`, result: `ratio ${data.ratio.vsBare}`, target: `>= ${TARGET}`, met: judged(data.ratio.vsBare >= TARGET) },
        { figure: '5', what: 'subscriber, deliveries/s (router, inbox off / DaprServer)', db: 'mysql', measured: `${m.routerNoInbox}/s`, baseline: `${m.daprServer}/s`, result: `ratio ${data.ratio.noInboxVsDaprServer}`, target: `>= ${NO_INBOX_TARGET}`, met: judged(data.ratio.noInboxVsDaprServer >= NO_INBOX_TARGET) },
        {
          figure: '5',
          what: 'subscriber, service CPU ms/delivery (router, inbox off / DaprServer)',
          db: 'mysql',
          measured: `${serviceCpu('routerNoInbox')} ms`,
          baseline: `${serviceCpu('daprServer')} ms`,
          result: `with inbox ${serviceCpu('router')} ms`,
          target: '<= DaprServer',
          met: judged(serviceCpu('routerNoInbox') <= serviceCpu('daprServer')),
        },
        { figure: '5', what: `subscriber, events/s (bulk of ${BULK_SIZE} / single, inbox on)`, db: 'mysql', measured: `${m.bulk}/s`, baseline: `${m.router}/s`, result: `${data.bulk.ratioToSingle}x`, target: `>= ${BULK_TARGET}x`, met: judged(data.bulk.ratioToSingle >= BULK_TARGET) },
        { figure: '5', what: 'subscriber, deliveries/s (router / DaprServer)', db: 'mysql', measured: `${m.router}/s`, baseline: `${m.daprServer}/s`, result: `ratio ${data.ratio.vsDaprServer}`, target: 'reported', met: null },
      ],
    };
  } finally {
    await close(routerServer);
    await close(bareServer);
    await close(noInboxServer);
    await daprServer.stop();
    await daprServer.client.stop();
    await emu.stop();
    await db.close();
  }
}

/** A CloudEvent as daprd delivers an event published through the outbox. */
function cloudEvent(id: string, topic = TOPIC): string {
  return JSON.stringify({
    specversion: '1.0',
    id,
    source: 'users',
    type: 'com.dapr.event.sent',
    datacontenttype: 'application/json',
    topic,
    pubsubname: 'pubsub',
    traceid: '00-00000000000000000000000000000000-0000000000000000-00',
    traceparent: '00-00000000000000000000000000000000-0000000000000000-00',
    tracestate: '',
    time: new Date().toISOString(),
    data: { account: `u-${id}`, mobile: '13800000000', id, creationTime: new Date().toISOString(), topic },
  });
}

/** daprd's bulk delivery of one CloudEvent per id (the envelope as bulk subscribe sends it). */
function bulkDelivery(ids: readonly string[]): string {
  const entries = ids.map((id, i) => `{"entryId":"${i}","event":${cloudEvent(id, BULK_TOPIC)},"metadata":{},"contentType":"application/cloudevents+json"}`);
  return `{"entries":[${entries.join(',')}],"id":"${ids[0]}","metadata":{"pubsubName":"pubsub"},"pubsubname":"pubsub","topic":"${BULK_TOPIC}","type":"com.dapr.event.sent.bulk"}`;
}

/** The route an app announces for the topic on GET /dapr/subscribe, as daprd would read it. */
async function routeOf(port: number, topic = TOPIC): Promise<string> {
  const agent = new Agent();
  try {
    const answer = await send(agent, port, 'GET', '/dapr/subscribe', undefined);
    const items = JSON.parse(answer.body) as Array<{ topic: string; route?: string; routes?: { default?: string } }>;
    const item = items.find((i) => i.topic === topic);
    const route = item?.route ?? item?.routes?.default;
    if (!route) throw new Error(`no route for ${topic} in ${answer.body}`);
    return route.startsWith('/') ? route : `/${route}`;
  } finally {
    agent.destroy();
  }
}

/** A port nobody listens on now (DaprServer takes a port number, not 0). */
async function freePort(): Promise<number> {
  const probe = createServer();
  const port = await listen(probe);
  await close(probe);
  return port;
}
