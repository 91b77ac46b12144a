/**
 * Shared pieces of the reliability suite: seeded randomness, the figures line each test prints,
 * HTTP clients that survive a dead server, the crashable service as a child process, a
 * round-robin balancer in front of replicas, and queries that read the outcome from the database.
 */
import { Agent, createServer, request, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { PublishRecord } from '../../src/testing';
import { mulberry32 } from '../../src/testing/faults';
import { run, type Child } from '../support/processes';

/** A seeded generator (mulberry32, the emulator's own): the same sequence for the same seed. */
export const random = mulberry32;

/** The seed of CI runs, so that a CI run is the same run every time. */
export const CI_SEED = 20240601;

/**
 * The run's seed: RELIABILITY_SEED when set (to replay a run), else CI_SEED when env CI is set
 * (CI runs are reproducible), else a fresh one (local runs explore). Printed either way.
 */
export function seedFor(test: string, env: NodeJS.ProcessEnv = process.env): number {
  const given = env.RELIABILITY_SEED;
  if (given !== undefined && given !== '' && !/^\d+$/.test(given)) throw new Error(`RELIABILITY_SEED must be a whole number, got '${given}'`);
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  const seed = given ? Number(given) : ci ? CI_SEED : Math.floor(Math.random() * 2 ** 31);
  const source = given ? 'RELIABILITY_SEED' : ci ? 'fixed for CI' : 'random';
  console.log(`      reliability: ${test}: seed=${seed} (${source}; replay with RELIABILITY_SEED=${seed})`);
  return seed;
}

/** One line per test, always in this shape: `reliability: <test>: key=value ...`. */
export function figures(test: string, values: Record<string, number | string>): void {
  console.log(`      reliability: ${test}: ${Object.entries(values).map(([k, v]) => `${k}=${v}`).join(' ')}`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `pollMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs: number, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** Resolves with `p`, or rejects naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A port that was free a moment ago (the crash test keeps one port across restarts). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

export async function listen(handler: RequestListener | import('express').Express): Promise<{ server: Server; url: string; port: number }> {
  const server = createServer(handler as RequestListener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, port };
}

export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/**
 * One HTTP request over `agent`. Rejects on a connection error (a killed server) or after
 * `timeoutMs`; never hangs.
 */
export function send(
  agent: Agent,
  url: string,
  options: { method?: string; headers?: Record<string, string | number>; body?: string | Buffer; timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'POST', agent, headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.setTimeout(options.timeoutMs ?? 30_000, () => req.destroy(new Error(`no answer from ${url} within ${options.timeoutMs ?? 30_000} ms`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

export function postJson(agent: Agent, url: string, body: unknown, timeoutMs?: number): Promise<HttpAnswer> {
  const text = JSON.stringify(body);
  return send(agent, url, { headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }, body: text, timeoutMs });
}

/** The event id of a publish record: the bulk entry id, else the envelope's id (pinned by DaprPublisher). */
export function eventIdOf(p: PublishRecord): string | undefined {
  return p.entryId ?? (typeof p.envelope?.id === 'string' ? p.envelope.id : undefined) ?? p.metadata['cloudevent.id'];
}

export function countBy<T>(items: Iterable<T>, key: (item: T) => string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of items) {
    const k = key(item);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

export function repeated(counts: Map<string, number>): number {
  let n = 0;
  for (const c of counts.values()) if (c > 1) n += 1;
  return n;
}

// ---------------------------------------------------------------------------------------------
// The database as the judge.

export interface OutboxRow {
  eventId: string;
  state: number;
  account: string;
  lockOwner: string | null;
  timesSent: number;
}

export async function outboxRows(sequelize: Sequelize): Promise<OutboxRow[]> {
  const rows = (await sequelize.query('SELECT event_id, state, content, lock_owner, times_sent FROM integration_event_log', { type: QueryTypes.SELECT })) as Array<Record<string, unknown>>;
  return rows.map((r) => ({
    eventId: String(r.event_id),
    state: Number(r.state),
    account: String((JSON.parse(String(r.content)) as { account?: unknown }).account),
    lockOwner: (r.lock_owner as string | null) ?? null,
    timesSent: Number(r.times_sent),
  }));
}

export async function userAccounts(sequelize: Sequelize): Promise<string[]> {
  const rows = (await sequelize.query('SELECT account FROM users', { type: QueryTypes.SELECT })) as Array<{ account: string }>;
  return rows.map((r) => r.account);
}

export async function notices(sequelize: Sequelize): Promise<Array<{ eventId: string; account: string }>> {
  // Quoted: PostgreSQL folds an unquoted eventId to lower case.
  const eventId = sequelize.getQueryInterface().quoteIdentifier('eventId');
  return (await sequelize.query(`SELECT ${eventId} AS ${eventId}, account FROM registration_notices`, { type: QueryTypes.SELECT })) as Array<{ eventId: string; account: string }>;
}

/**
 * For each ordering key, the sequence numbers of its events in the order their effects were
 * committed (notice ids, which a key's deliveries write one after another).
 */
export async function handledOrderByKey(sequelize: Sequelize): Promise<Map<string, number[]>> {
  const q = (n: string) => sequelize.getQueryInterface().quoteIdentifier(n);
  const rows = (await sequelize.query(
    `SELECT o.ordering_key AS k, o.key_sequence AS s FROM registration_notices n JOIN integration_event_log o ON o.event_id = n.${q('eventId')} ORDER BY n.id`,
    { type: QueryTypes.SELECT },
  )) as Array<{ k: string | null; s: number | string | null }>;
  const byKey = new Map<string, number[]>();
  for (const r of rows) {
    if (r.k === null) continue;
    const list = byKey.get(r.k) ?? [];
    list.push(Number(r.s));
    byKey.set(r.k, list);
  }
  return byKey;
}

export async function countRows(sequelize: Sequelize, sql: string, replacements: unknown[] = []): Promise<number> {
  const [row] = (await sequelize.query(sql, { type: QueryTypes.SELECT, replacements })) as Array<{ n: number | string }>;
  return Number(row?.n ?? 0);
}

/**
 * Drops the example's UNIQUE index on registration_notices.eventId, so that a second effect of
 * one event would show as a second row instead of failing on the index: the inbox alone has to
 * keep effects single.
 */
export async function dropNoticeUniqueIndex(sequelize: Sequelize): Promise<void> {
  if (sequelize.getDialect() === 'sqlite') {
    // SQLite keeps a column UNIQUE as an autoindex that cannot be dropped: rebuild the table without it.
    await sequelize.query('CREATE TABLE registration_notices_plain AS SELECT * FROM registration_notices');
    await sequelize.query('DROP TABLE registration_notices');
    await sequelize.query('ALTER TABLE registration_notices_plain RENAME TO registration_notices');
    return;
  }
  if (sequelize.getDialect() === 'postgres') {
    // A column UNIQUE is a constraint there, with an index of the same name behind it.
    const constraints = (await sequelize.query(
      `SELECT c.conname AS name FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) ` +
        `WHERE c.conrelid = 'registration_notices'::regclass AND c.contype = 'u' AND a.attname = 'eventId'`,
      { type: QueryTypes.SELECT },
    )) as Array<{ name: string }>;
    for (const { name } of constraints) await sequelize.query(`ALTER TABLE registration_notices DROP CONSTRAINT "${name.replace(/"/g, '""')}"`);
    return;
  }
  const indexes = (await sequelize.query("SHOW INDEX FROM registration_notices WHERE Column_name = 'eventId' AND Non_unique = 0", { type: QueryTypes.SELECT })) as Array<{ Key_name: string }>;
  for (const name of new Set(indexes.map((i) => i.Key_name))) await sequelize.query(`ALTER TABLE registration_notices DROP INDEX \`${name}\``);
}

/**
 * What a finished run must look like in the database, measured (not asserted) so the test can
 * print the figures before it asserts.
 */
export interface Outcome {
  users: number;
  events: number;
  notices: number;
  /** Users without an outbox row, or outbox rows without a user (an event of a rolled-back request). */
  orphanUsers: string[];
  orphanEvents: string[];
  /** Outbox rows still in state 0, 1 or 3. */
  undrained: number;
  /** Event ids with no Notice (handled zero times). */
  unhandled: string[];
  /** Event ids with more than one Notice (handled twice). */
  doubleEffects: number;
  /** Notices whose event id is not an outbox row. */
  strayNotices: number;
}

export async function outcome(sequelize: Sequelize): Promise<Outcome> {
  const [users, rows, seen] = await Promise.all([userAccounts(sequelize), outboxRows(sequelize), notices(sequelize)]);
  const userSet = new Set(users);
  const eventAccounts = new Set(rows.map((r) => r.account));
  const perEvent = countBy(seen, (n) => n.eventId);
  const eventIds = new Set(rows.map((r) => r.eventId));
  return {
    users: users.length,
    events: rows.length,
    notices: seen.length,
    orphanUsers: users.filter((a) => !eventAccounts.has(a)),
    orphanEvents: rows.filter((r) => !userSet.has(r.account)).map((r) => r.account),
    undrained: rows.filter((r) => r.state !== 2).length,
    unhandled: rows.filter((r) => !perEvent.has(r.eventId)).map((r) => r.eventId),
    doubleEffects: repeated(perEvent),
    strayNotices: seen.filter((n) => !eventIds.has(n.eventId)).length,
  };
}

/** Whether the run has settled: every row Published and every event handled. */
export async function settled(sequelize: Sequelize): Promise<boolean> {
  const o = await outcome(sequelize);
  return o.undrained === 0 && o.unhandled.length === 0;
}

// ---------------------------------------------------------------------------------------------
// The crashable service as a child process.

export const CRASHABLE = join(__dirname, 'fixtures', 'crashable-service.ts');

export interface ServiceProcessOptions {
  databaseUrl: string;
  daprPort: number;
  port: number;
  instanceId: string;
  seed: number;
  publishDelayMs?: number;
  outbox?: Record<string, unknown>;
  /** Runs the process with its Date.now shifted by this many ms (a drifted host clock). */
  clockShiftMs?: number;
  /** Gives each registration event an ordering key, one of this many (0: unkeyed). */
  orderingKeys?: number;
}

export const SHIFT_CLOCK = join(__dirname, 'fixtures', 'shift-clock.cjs');

/** Starts the crashable service and waits for its ready line. */
export async function startService(o: ServiceProcessOptions): Promise<Child> {
  const preload = o.clockShiftMs ? ['--require', SHIFT_CLOCK] : [];
  const child = run(process.execPath, [...preload, '--import', 'tsx', CRASHABLE], {
    env: {
      DATABASE_URL: o.databaseUrl,
      DAPR_HTTP_PORT: String(o.daprPort),
      PORT: String(o.port),
      INSTANCE_ID: o.instanceId,
      SEED: String(o.seed),
      PUBLISH_DELAY_MS: String(o.publishDelayMs ?? 0),
      OUTBOX_OPTIONS: JSON.stringify(o.outbox ?? {}),
      APP_API_TOKEN: '',
      CLOCK_SHIFT_MS: String(o.clockShiftMs ?? 0),
      ORDERING_KEYS: String(o.orderingKeys ?? 0),
    },
  });
  try {
    await child.waitFor(/ready on http:\/\/127\.0\.0\.1:\d+/, 60_000);
  } catch (err) {
    await child.stop('SIGKILL');
    throw err;
  }
  return child;
}

/** SIGKILLs the child (its whole process group) and waits for it to be gone. */
export async function kill(child: Child | undefined): Promise<void> {
  if (!child) return;
  await child.stop('SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// A round-robin balancer: one app id, several replicas, as a service mesh or Kubernetes service
// spreads the sidecar's deliveries.

export interface Balancer {
  url: string;
  close(): Promise<void>;
}

/** Forwards each request to the next live target; 502 when none answers (daprd reads it as RETRY). */
export async function startBalancer(targets: () => string[]): Promise<Balancer> {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  let next = 0;
  const forward: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const live = targets();
      if (live.length === 0) {
        res.statusCode = 502;
        return void res.end('no replica');
      }
      const target = live[next++ % live.length]!;
      const upstream = request(target + req.url, { method: req.method, headers: req.headers, agent }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
      });
      upstream.on('error', () => {
        if (res.headersSent) return void res.destroy();
        res.statusCode = 502;
        res.end('replica unreachable');
      });
      upstream.end(Buffer.concat(chunks));
    });
  };
  const { server, url } = await listen(forward);
  return {
    url,
    async close() {
      await closeServer(server);
      agent.destroy();
    },
  };
}
