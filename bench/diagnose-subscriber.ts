/**
 * Where a subscriber delivery's CPU goes. Not part of `npm run bench`; run it by hand under the
 * profiler, one side at a time (MariaDB):
 *
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/diagnose-subscriber.ts inbox 5000
 *   npx tsx bench/diagnose-subscriber.ts --top /tmp/prof/<main thread's file>.cpuprofile 5000
 *
 * Sides: `inbox` (the router with its inbox), `noinbox` (the router, inbox off), `bare` (an
 * express route doing the same insert), `bulk` (the router with its inbox, bulk deliveries of
 * 100, 4 in flight; the count given is of events). The load is figure 5's, 32 keep-alive clients POSTing
 * CloudEvents, from a child process (not profiled), so the profile holds the service alone.
 * `--top` prints the functions with the most self time, and the packages or files, per delivery.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import express from 'express';
import { DataTypes } from 'sequelize';
import { createSubscriptionRouter } from '../src';
import { runMigrations } from '../src/extend';
import { createBenchDb } from './support/db';
import { close, closedLoop, listen } from './support/load';

const TOPIC = 'BenchEvent';
const BULK_SIZE = 100;
const quiet = { warn() {}, error() {}, info() {}, debug() {} };

async function load(side: string, requests: number): Promise<void> {
  const db = await createBenchDb('mysql');
  const s = db.sequelize;
  await runMigrations(s);
  const Received = s.define('BenchReceived', { eventId: { type: DataTypes.STRING(64), allowNull: false }, account: { type: DataTypes.STRING(64), allowNull: false } }, { tableName: 'bench_received', timestamps: false });
  await Received.sync();
  const insert = (data: { id: string; account: string }) => Received.create({ eventId: data.id, account: data.account });
  const app = express();
  if (side === 'bare') {
    app.use(express.json({ type: ['application/json', 'application/cloudevents+json'] }));
    app.post('/dapr-outbox/pubsub/BenchEvent', async (req, res) => {
      await insert((req.body as { data: { id: string; account: string } }).data);
      res.json({ status: 'SUCCESS' });
    });
  } else {
    // MAX_TX: the router's groupCommit.maxTransactions (default: the router's own).
    const groupCommit = process.env.MAX_TX ? { maxTransactions: Number(process.env.MAX_TX) } : {};
    const router = side !== 'noinbox' ? createSubscriptionRouter({ sequelize: s, appApiToken: null, consumer: 'bench', logger: quiet, groupCommit }) : createSubscriptionRouter({ inbox: false, appApiToken: null, logger: quiet });
    router.topic('pubsub', TOPIC, (data: { id: string; account: string }) => insert(data), side === 'bulk' ? { bulk: true } : {});
    app.use(router);
  }
  const server = createServer(app);
  const port = await listen(server);
  const child = fork(__filename, ['--load', String(port), String(requests), side], { execArgv: ['--import', 'tsx'] });
  const cpu0 = process.cpuUsage();
  await new Promise((resolve) => child.on('exit', resolve));
  const cpu = process.cpuUsage(cpu0);
  console.log(`${side}: service CPU ${((cpu.user + cpu.system) / 1000 / requests).toFixed(3)} ms per delivery`);
  await close(server);
  await db.close();
}

async function drive(port: number, requests: number, bulk: boolean): Promise<void> {
  let seq = 0;
  const r = await closedLoop({
    port,
    path: '/dapr-outbox/pubsub/BenchEvent',
    concurrency: bulk ? 4 : 32,
    durationMs: 120_000,
    maxRequests: bulk ? Math.ceil(requests / BULK_SIZE) : requests,
    body: () => (bulk ? bulkOf(Array.from({ length: BULK_SIZE }, () => cloudEvent(`evt-${process.pid}-${++seq}`))) : cloudEvent(`evt-${process.pid}-${++seq}`)),
    headers: { 'content-type': bulk ? 'application/json' : 'application/cloudevents+json' },
    ok: (status, text) => status === 200 && text.includes('SUCCESS') && !text.includes('RETRY'),
  });
  console.log(`${Math.round(r.rps)} ${bulk ? `bulk deliveries of ${BULK_SIZE}` : 'deliveries'}/s, ${r.completed} completed, ${r.errors} errors${r.firstError ? ` (${r.firstError})` : ''}`);
}

/** daprd's bulk delivery around CloudEvents (JSON texts). */
function bulkOf(events: string[]): string {
  const entries = events.map((e, i) => `{"entryId":"${i}","event":${e},"metadata":{},"contentType":"application/cloudevents+json"}`);
  return `{"entries":[${entries.join(',')}],"id":"b","metadata":{},"pubsubname":"pubsub","topic":"${TOPIC}","type":"com.dapr.event.sent.bulk"}`;
}

function cloudEvent(id: string): string {
  const data = { account: `u-${id}`, mobile: '13800000000', id, creationTime: new Date().toISOString(), topic: TOPIC };
  return JSON.stringify({ specversion: '1.0', id, source: 'users', type: 'com.dapr.event.sent', datacontenttype: 'application/json', topic: TOPIC, pubsubname: 'pubsub', time: new Date().toISOString(), data });
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/**
 * Self time per function, and per package or file, in microseconds per delivery (the samples'
 * own time deltas; idle left out), for the deliveries the profile saw.
 */
function top(file: string, deliveries: number, n = 25): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const fns = new Map<string, number>();
  const files = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') return;
    busy += us;
    const where = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(src|bench)\//, '$1/');
    const fn = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
    const pkg = where.startsWith('src/') || where.startsWith('bench/') ? where : (where.split('/')[0] ?? where) || '(native)';
    files.set(pkg, (files.get(pkg) ?? 0) + us);
  });
  const per = (us: number) => `${(us / deliveries).toFixed(1)} us`.padStart(10);
  console.log(`busy ${per(busy)} per delivery (${deliveries} deliveries)`);
  for (const [fn, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${per(us)}  ${fn}`);
  console.log('-- by package or file');
  for (const [f, us] of [...files].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${per(us)}  ${f}`);
}

if (process.argv[2] === '--load') void drive(Number(process.argv[3]), Number(process.argv[4]), process.argv[5] === 'bulk');
else if (process.argv[2] === '--top') top(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]) || 25);
else
  load(process.argv[2] ?? 'inbox', Number(process.argv[3] ?? 5000)).catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
