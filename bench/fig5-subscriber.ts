/**
 * Figure 5, subscriber throughput: deliveries/s through the subscription router (CloudEvent
 * unwrap + inbox + a handler doing one insert, all in one transaction) over (a) a bare express
 * route doing the same insert and (b) @dapr/dapr's DaprServer handling the same deliveries.
 * Target: (a) >= 0.8; (b) reported.
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
const TOPIC = 'BenchEvent';

type Side = 'router' | 'bare' | 'daprServer' | 'routerNoInbox';

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

  // Diagnostic (full runs): the router with the inbox off, which splits the router's cost into
  // its HTTP/CloudEvent part and its inbox transaction.
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
  const ports: Record<Side, number> = { router: await listen(routerServer), bare: await listen(bareServer), daprServer: daprPort, routerNoInbox: await listen(noInboxServer) };
  const paths: Record<Side, string> = {
    router: await routeOf(ports.router),
    bare: '/bench-event',
    daprServer: await routeOf(ports.daprServer),
    routerNoInbox: await routeOf(ports.routerNoInbox),
  };
  const sides: Side[] = ctx.quick ? ['router', 'bare', 'daprServer'] : ['router', 'bare', 'daprServer', 'routerNoInbox'];
  const errors: Record<Side, number> = { router: 0, bare: 0, daprServer: 0, routerNoInbox: 0 };
  const pids = { service: process.pid, mariadb: databasePid() };
  const cpu: Record<Side, Array<Record<string, number>>> = { router: [], bare: [], daprServer: [], routerNoInbox: [] };
  let firstError: string | undefined;
  let seq = 0;
  const body = () => cloudEvent(`evt-${process.pid}-${++seq}`);
  const run = async (side: Side, ms: number) => {
    const before = sampleCpu(pids);
    const r = await closedLoop({
      port: ports[side],
      path: paths[side],
      concurrency: CONCURRENCY,
      durationMs: ms,
      maxRequests: 200_000,
      body,
      headers: { 'content-type': 'application/cloudevents+json' },
      // RETRY and DROP answers are 200 too: only SUCCESS counts as a delivery.
      ok: (status, text) => status === 200 && text.includes('SUCCESS'),
    });
    cpu[side].push(cpuPer(before, sampleCpu(pids), Math.max(1, r.completed)));
    errors[side] += r.errors;
    firstError ??= r.firstError;
    return r.rps;
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
    const data = {
      concurrency: CONCURRENCY,
      rounds: rps.router.length,
      durationMs,
      deliveriesPerS: m,
      ratio: { vsBare: round(m.router / m.bare), vsDaprServer: round(m.router / m.daprServer) },
      perRound: Object.fromEntries(Object.entries(rps).map(([k, v]) => [k, v.map((x) => round(x))])),
      errors,
      firstError,
      // Where the time goes: CPU milliseconds per delivery of this process (the apps and the
      // load) and of MariaDB, median over rounds.
      cpuMsPerDelivery: Object.fromEntries(sides.map((side) => [side, medianOfRecords(cpu[side])])),
      inboxRows: Number(n),
      target: TARGET,
    };
    ctx.log(`  fig 5: ${JSON.stringify(m)} deliveries/s; router/bare ${data.ratio.vsBare}, router/DaprServer ${data.ratio.vsDaprServer} (${JSON.stringify(data.perRound)}, errors ${JSON.stringify(errors)}, CPU ms/delivery ${JSON.stringify(data.cpuMsPerDelivery)})`);
    return {
      key: 'subscriber',
      data,
      rows: [
        { figure: '5', what: 'subscriber, deliveries/s (router / bare express)', db: 'mysql', measured: `${m.router}/s`, baseline: `${m.bare}/s`, result: `ratio ${data.ratio.vsBare}`, target: `>= ${TARGET}`, met: ctx.quick ? null : data.ratio.vsBare >= TARGET },
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
function cloudEvent(id: string): string {
  return JSON.stringify({
    specversion: '1.0',
    id,
    source: 'users',
    type: 'com.dapr.event.sent',
    datacontenttype: 'application/json',
    topic: TOPIC,
    pubsubname: 'pubsub',
    traceid: '00-00000000000000000000000000000000-0000000000000000-00',
    traceparent: '00-00000000000000000000000000000000-0000000000000000-00',
    tracestate: '',
    time: new Date().toISOString(),
    data: { account: `u-${id}`, mobile: '13800000000', id, creationTime: new Date().toISOString(), topic: TOPIC },
  });
}

/** The route an app announces for the topic on GET /dapr/subscribe, as daprd would read it. */
async function routeOf(port: number): Promise<string> {
  const agent = new Agent();
  try {
    const answer = await send(agent, port, 'GET', '/dapr/subscribe', undefined);
    const items = JSON.parse(answer.body) as Array<{ topic: string; route?: string; routes?: { default?: string } }>;
    const item = items.find((i) => i.topic === TOPIC);
    const route = item?.route ?? item?.routes?.default;
    if (!route) throw new Error(`no route for ${TOPIC} in ${answer.body}`);
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
