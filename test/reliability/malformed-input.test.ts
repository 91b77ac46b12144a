/**
 * Malformed input. To the subscription router: thousands of generated bad deliveries, each of
 * which must get the answer the sidecar needs (docs/dapr-pubsub-contract.md,
 * section 4): a poison delivery 200 {"status":"DROP"} (any other 4xx would make daprd retry it
 * for ever), an unknown route 404, a wrong or missing app API token 401. Nothing may crash or
 * leave an unhandled rejection, nothing may reach the handler, and good deliveries must still be
 * served afterwards. To `publish()` and the middleware: events that can never be delivered are
 * refused with an EventValidationError, and nothing is written.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Agent, type Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { DataTypes, type Model, type ModelStatic } from 'sequelize';
import { createOutbox, createSubscriptionRouter, EventValidationError, IntegrationEvent, type Outbox } from '../../src';
import { silentLogger } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import { closeServer, countRows, figures, listen, random, seedFor, send, type HttpAnswer } from './helpers';

const TOKEN = 'app-api-token-for-the-reliability-suite';
const SINGLE = '/IntegrationEvent/RegisterUser';
const BULK = '/dapr-outbox/pubsub/RegisterUserBatch';
const MAX_BODY = 64 * 1024;
const MAX_BULK_BODY = 256 * 1024;
const BAD_DELIVERIES = 5000;
const CONCURRENCY = 16;

type Expect = { answer: 'DROP' } | { answer: 'status'; status: 401 | 404 } | { answer: 'bulk-DROP'; entryIds: string[] };

interface Case {
  category: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  expect: Expect;
}

function cloudEvent(fields: Record<string, unknown> = {}): Record<string, unknown> {
  const ce: Record<string, unknown> = {
    data: { account: 'tom', mobile: '13800000000' },
    datacontenttype: 'application/json',
    id: randomUUID(),
    pubsubname: 'pubsub',
    source: 'users',
    specversion: '1.0',
    time: '2024-03-27T23:47:53Z',
    topic: 'RegisterUserEvent',
    type: 'com.dapr.event.sent',
    ...fields,
  };
  for (const k of Object.keys(ce)) if (ce[k] === undefined) delete ce[k];
  return ce;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

function isJson(b: Buffer): boolean {
  try {
    JSON.parse(b.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

/** The generator: `n` bad deliveries over every category, variants drawn from `rand`. */
function badDeliveries(n: number, rand: () => number): Case[] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
  const auth = { 'dapr-api-token': TOKEN };
  const ceHeaders = { ...auth, 'content-type': 'application/cloudevents+json' };
  const drop: Expect = { answer: 'DROP' };
  const generators: Array<() => Case> = [
    // Not JSON at all, or broken JSON.
    () => {
      const good = JSON.stringify(cloudEvent());
      let body: Buffer;
      do {
        body = pick([
          () => Buffer.from(good.slice(0, 1 + Math.floor(rand() * (good.length - 2)))),
          () => Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))),
          () => Buffer.from(`${good.slice(0, -1)},}`),
          () => Buffer.from("{'id':'1','source':'x','type':'t','specversion':'1.0'}"),
          () => Buffer.from('undefined'),
          () => Buffer.alloc(0),
          () => Buffer.from(good.replace(/"/g, '')),
        ])();
      } while (body.length > 0 && isJson(body));
      return { category: 'invalid-json', method: 'POST', path: SINGLE, headers: ceHeaders, body, expect: drop };
    },
    // A CloudEvent, but in a content type the sidecar never sends.
    () => ({
      category: 'wrong-content-type',
      method: 'POST',
      path: SINGLE,
      headers: { ...auth, 'content-type': pick(['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/octet-stream', 'image/png', 'application/x-www-form-urlencoded', 'text/html; charset=utf-8']) },
      body: json(cloudEvent()),
      expect: drop,
    }),
    // A required CloudEvent attribute missing or empty.
    () => {
      const name = pick(['id', 'source', 'type', 'specversion']);
      return { category: 'missing-field', method: 'POST', path: SINGLE, headers: ceHeaders, body: json(cloudEvent({ [name]: pick([undefined, '']) })), expect: drop };
    },
    // Attributes or data of the wrong type (the topic validates its data: account and mobile strings).
    () => {
      const body = pick<() => Buffer>([
        () => json(cloudEvent({ id: pick([42, true, null, {}, ['x']]) })),
        () => json(cloudEvent({ specversion: 1.0 })),
        () => json(cloudEvent({ source: [] })),
        () => json(cloudEvent({ type: {} })),
        () => json(cloudEvent({ datacontenttype: 42 })),
        () => json(cloudEvent({ data: { account: 42, mobile: '13800000000' } })),
        () => json(cloudEvent({ data: { account: 'tom', mobile: null } })),
        () => json(cloudEvent({ data: pick(['a string', 7, [], null, true]) })),
        () => json(cloudEvent({ data: undefined })),
        () => json(pick([[cloudEvent()], null, 42, 'a string', true])),
      ])();
      return { category: 'wrong-type', method: 'POST', path: SINGLE, headers: ceHeaders, body, expect: drop };
    },
    // Larger than maxBodyBytes, with or without a Content-Length.
    () => {
      const padding = 'x'.repeat(MAX_BODY + 1 + Math.floor(rand() * MAX_BODY));
      const chunked = rand() < 0.5;
      return {
        category: 'huge-body',
        method: 'POST',
        path: SINGLE,
        headers: chunked ? { ...ceHeaders, 'transfer-encoding': 'chunked' } : ceHeaders,
        body: json(cloudEvent({ data: { account: 'tom', mobile: '13800000000', padding } })),
        expect: drop,
      };
    },
    // data_base64 that is not base64, or not the JSON its datacontenttype says.
    () => {
      const fields = pick<() => Record<string, unknown>>([
        () => ({ data: undefined, data_base64: pick(['@@@@', 'ab$d', '====', 'a=b=', 'abcde', '!!', 'dGVzdA==x']) }),
        () => ({ data: undefined, data_base64: pick([12345, {}, [], true]) }),
        () => ({ data: undefined, data_base64: Buffer.from(pick(['not json', '{"account":', '<xml/>'])).toString('base64') }),
        () => ({ data_base64: Buffer.from('{"account":"tom","mobile":"13800000000"}').toString('base64') }),
      ])();
      return { category: 'bad-base64', method: 'POST', path: SINGLE, headers: ceHeaders, body: json(cloudEvent(fields)), expect: drop };
    },
    // Routes nobody subscribed (under the router's prefix, or anywhere else).
    () => ({
      category: 'unknown-route',
      method: pick(['POST', 'POST', 'GET']),
      path: pick(['/dapr-outbox/pubsub/Nope', '/dapr-outbox/other/RegisterUserEvent', '/dapr-outbox/x', '/dapr-outbox/pubsub/RegisterUserEvent', '/IntegrationEvent/Unknown', `/random/${Math.floor(rand() * 1e6)}`]),
      headers: ceHeaders,
      body: json(cloudEvent()),
      expect: { answer: 'status', status: 404 },
    }),
    // A good delivery with a wrong or missing token.
    () => {
      const token = pick<string | undefined>([undefined, '', 'wrong', TOKEN.slice(0, -1), `${TOKEN}x`, TOKEN.toUpperCase(), `Bearer ${TOKEN}`]);
      const headers: Record<string, string> = { 'content-type': 'application/cloudevents+json' };
      if (token !== undefined) headers['dapr-api-token'] = token;
      const [method, path] = pick([['POST', SINGLE], ['POST', BULK], ['GET', '/dapr/subscribe'], ['POST', '/dapr-outbox/pubsub/Nope']] as const);
      return { category: 'bad-token', method, path, headers, body: method === 'GET' ? undefined : json(cloudEvent()), expect: { answer: 'status', status: 401 } };
    },
    // Bulk deliveries: a body no entry can be named in (404: daprd drops them all), or named
    // entries that are each poison (DROP one by one).
    () => {
      const bulkEnvelope = (entries: unknown) => ({ id: randomUUID(), type: 'com.dapr.event.sent.bulk', topic: 'RegisterUserBatch', pubsubname: 'pubsub', metadata: {}, entries });
      if (rand() < 0.4) {
        const [headers, body] = pick<() => [Record<string, string>, Buffer]>([
          () => [{ ...auth, 'content-type': 'application/json' }, Buffer.from('{"entries":[')],
          () => [{ ...auth, 'content-type': 'application/json' }, json(bulkEnvelope('not an array'))],
          () => [{ ...auth, 'content-type': 'text/plain' }, json(bulkEnvelope([]))],
          () => [{ ...auth, 'content-type': 'application/json' }, json(bulkEnvelope([{ entryId: 'e', event: cloudEvent(), padding: 'x'.repeat(MAX_BULK_BODY) }]))],
        ])();
        return { category: 'bulk-unreadable', method: 'POST', path: BULK, headers, body, expect: { answer: 'status', status: 404 } };
      }
      const entries = Array.from({ length: 1 + Math.floor(rand() * 5) }, (_, i) => ({
        entryId: `e${i}`,
        contentType: 'application/cloudevents+json',
        metadata: {},
        event: pick<() => unknown>([
          () => cloudEvent({ id: undefined }),
          () => cloudEvent({ data: { account: 1 } }),
          () => pick([42, null, true]),
          () => '{"broken":',
          () => cloudEvent({ data: undefined, data_base64: '@@' }),
        ])(),
      }));
      return { category: 'bulk-poison-entries', method: 'POST', path: BULK, headers: { ...auth, 'content-type': 'application/json' }, body: json(bulkEnvelope(entries)), expect: { answer: 'bulk-DROP', entryIds: entries.map((e) => e.entryId) } };
    },
  ];
  return Array.from({ length: n }, (_, i) => generators[i % generators.length]!());
}

/** Whether an answer is the one the contract requires; the reason when not. */
function judge(c: Case, a: HttpAnswer): string | undefined {
  const e = c.expect;
  if (e.answer === 'DROP') {
    if (a.status !== 200 || JSON.stringify(a.json) !== '{"status":"DROP"}') return `expected 200 {"status":"DROP"}, got ${a.status} ${a.text.slice(0, 120)}`;
  } else if (e.answer === 'status') {
    if (a.status !== e.status) return `expected ${e.status}, got ${a.status} ${a.text.slice(0, 120)}`;
  } else {
    const want = JSON.stringify({ statuses: e.entryIds.map((entryId) => ({ entryId, status: 'DROP' })) });
    if (a.status !== 200 || JSON.stringify(a.json) !== want) return `expected 200 ${want}, got ${a.status} ${a.text.slice(0, 160)}`;
  }
  return undefined;
}

class RegisterUserEvent extends IntegrationEvent {
  constructor(
    public account: string,
    public mobile: string,
  ) {
    super();
  }
}

describe('reliability: malformed deliveries to the subscription router (sqlite)', function () {
  this.timeout(180_000);
  let db: TestDb | undefined;
  let server: Server | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => void rejections.push(reason);

  before(() => process.on('unhandledRejection', onRejection));
  after(async () => {
    process.off('unhandledRejection', onRejection);
    await closeServer(server);
    agent.destroy();
    await db?.close();
  });

  it(`answers ${BAD_DELIVERIES} bad deliveries per the contract, runs no handler for them, and still serves good ones`, async () => {
    const seed = seedFor('malformed-input');
    db = await createTestDb('sqlite');
    const outbox = createOutbox({ sequelize: db.sequelize, publisher: new RecordingPublisher(), logger: silentLogger });
    await outbox.migrate();
    const Effect = db.sequelize.define('Effect', { eventId: DataTypes.STRING(64), account: DataTypes.STRING(64) }, { tableName: 'effects', timestamps: false });
    await Effect.sync();
    let handled = 0;
    const handler = async (data: { account: string }, ctx: { id: string }) => {
      handled += 1;
      await Effect.create({ eventId: ctx.id, account: data.account });
    };
    const validate = (d: unknown) => {
      const v = d as { account?: unknown; mobile?: unknown } | null;
      return !!v && typeof v === 'object' && typeof v.account === 'string' && typeof v.mobile === 'string';
    };
    const router = createSubscriptionRouter({ outbox, appApiToken: TOKEN, maxBodyBytes: MAX_BODY, maxBulkBodyBytes: MAX_BULK_BODY, logger: silentLogger });
    router.topic('pubsub', 'RegisterUserEvent', handler, { route: SINGLE, validate });
    router.topic('pubsub', 'RegisterUserBatch', handler, { bulk: true, validate });
    const app = express();
    app.use(router);
    app.use(express.json());
    const listening = await listen(app);
    server = listening.server;

    const cases = badDeliveries(BAD_DELIVERIES, random(seed));
    const wrong: string[] = [];
    const failures: string[] = [];
    const perCategory = new Map<string, number>();
    let cursor = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = cursor++; i < cases.length; i = cursor++) {
          const c = cases[i]!;
          perCategory.set(c.category, (perCategory.get(c.category) ?? 0) + 1);
          const headers = { ...c.headers };
          if (c.body && !headers['transfer-encoding']) headers['content-length'] = String(c.body.length);
          try {
            const answer = await send(agent, `${listening.url}${c.path}`, { method: c.method, headers, body: c.body, timeoutMs: 30_000 });
            const why = judge(c, answer);
            if (why) wrong.push(`#${i} ${c.category} ${c.method} ${c.path}: ${why}`);
          } catch (err) {
            failures.push(`#${i} ${c.category}: ${(err as Error).message}`);
          }
        }
      }),
    );
    const handledByBad = handled;
    const inboxAfterBad = await countRows(db.sequelize, 'SELECT COUNT(*) AS n FROM integration_event_inbox');

    // Good deliveries afterwards: singles, one of them twice, and a bulk batch.
    const good = Array.from({ length: 50 }, (_, i) => cloudEvent({ data: { account: `good${i}`, mobile: '13800000000' } }));
    const goodAnswers: HttpAnswer[] = [];
    for (const ce of [...good, good[0]!]) {
      goodAnswers.push(await send(agent, `${listening.url}${SINGLE}`, { headers: { 'dapr-api-token': TOKEN, 'content-type': 'application/cloudevents+json' }, body: json(ce) }));
    }
    const batch = Array.from({ length: 10 }, (_, i) => ({ entryId: `g${i}`, contentType: 'application/cloudevents+json', metadata: {}, event: cloudEvent({ data: { account: `batch${i}`, mobile: '13800000000' } }) }));
    const bulkAnswer = await send(agent, `${listening.url}${BULK}`, {
      headers: { 'dapr-api-token': TOKEN, 'content-type': 'application/json' },
      body: json({ id: randomUUID(), type: 'com.dapr.event.sent.bulk', topic: 'RegisterUserBatch', pubsubname: 'pubsub', metadata: {}, entries: batch }),
    });
    const subscribe = await send(agent, `${listening.url}/dapr/subscribe`, { method: 'GET', headers: { 'dapr-api-token': TOKEN } });
    const effects = await Effect.count();

    figures('malformed-input', {
      deliveries: cases.length,
      categories: [...perCategory].map(([k, v]) => `${k}:${v}`).join(','),
      'wrong-answers': wrong.length,
      'transport-failures': failures.length,
      'unhandled-rejections': rejections.length,
      'handler-runs-for-bad': handledByBad,
      'good-served': goodAnswers.filter((a) => a.status === 200 && JSON.stringify(a.json) === '{"status":"SUCCESS"}').length + (bulkAnswer.status === 200 ? 1 : 0),
      effects,
    });

    assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} deliveries got an answer the contract does not allow`);
    assert.deepEqual(failures.slice(0, 20), [], 'every delivery was answered (no reset connection, no timeout)');
    assert.deepEqual(rejections, [], 'no unhandled rejection');
    assert.equal(handledByBad, 0, 'no handler ran for a bad delivery');
    assert.equal(inboxAfterBad, 0, 'no bad delivery was recorded in the inbox');
    assert.ok(goodAnswers.every((a) => a.status === 200 && JSON.stringify(a.json) === '{"status":"SUCCESS"}'), 'good deliveries are served afterwards');
    assert.deepEqual(bulkAnswer.json, { statuses: batch.map((e) => ({ entryId: e.entryId, status: 'SUCCESS' })) });
    assert.equal(subscribe.status, 200);
    assert.equal(effects, good.length + batch.length, 'one effect per good event (the repeated one had none)');
  });
});

class Circular extends RegisterUserEvent {
  self: unknown = this;
}
class WithBigInt extends RegisterUserEvent {
  amount = BigInt(10);
}
class Oversized extends RegisterUserEvent {
  blob = 'x'.repeat(4096);
}

for (const kind of testDialects()) {
  describe(`reliability: undeliverable events given to publish() and the middleware (${kind})`, () => {
    let db: TestDb;
    let outbox: Outbox;
    let publisher: RecordingPublisher;
    let User: ModelStatic<Model>;
    let server: Server;
    let url: string;
    const agent = new Agent({ keepAlive: true });

    const bad: Array<[string, () => object, RegExp]> = [
      ['a circular event (not serialisable)', () => new Circular('tom', '1'), /not JSON-serialisable/],
      ['an event with a BigInt (not serialisable)', () => new WithBigInt('tom', '1'), /not JSON-serialisable/],
      ['an event larger than maxEventBytes', () => new Oversized('tom', '1'), /maxEventBytes is 2048/],
      ['an event without a topic', () => ({ id: randomUUID(), account: 'tom' }), /no topic/],
      ['an event with an empty topic', () => Object.assign(new RegisterUserEvent('tom', '1'), { topic: ' ' }), /no topic/],
      ['not an object', () => 'RegisterUserEvent' as unknown as object, /must be an object/],
    ];

    before(async () => {
      db = await createTestDb(kind);
      publisher = new RecordingPublisher();
      outbox = createOutbox({ sequelize: db.sequelize, publisher, logger: silentLogger, maxEventBytes: 2048 });
      await outbox.migrate();
      User = db.sequelize.define('User', { account: DataTypes.STRING(64) }, { tableName: 'users', timestamps: false });
      await User.sync();
      const app = express();
      app.use(express.json());
      app.use(outbox.middleware());
      app.post('/register/:case', async (req, res) => {
        await User.create({ account: req.params.case });
        await outbox.bus.publish(bad[Number(req.params.case)]![1]());
        res.status(201).json({ ok: true });
      });
      // The documented pattern: roll the unit of work back, then answer the error your way.
      app.use(outbox.errorHandler());
      app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
        if (err instanceof EventValidationError) return void res.status(400).json({ error: err.name, reason: err.reason });
        next(err);
      });
      ({ server, url } = await listen(app));
    });
    let refused = 0;
    after(async () => {
      figures(`undeliverable-events (${kind})`, {
        kinds: bad.length,
        refused,
        'rows-written': await countRows(db.sequelize, 'SELECT COUNT(*) AS n FROM integration_event_log'),
        'users-written': await User.count(),
        published: publisher.messages.length,
      });
      await outbox.close();
      await closeServer(server);
      agent.destroy();
      await db.close();
    });

    const nothingWritten = async () => {
      await outbox.drain();
      assert.deepEqual(await outbox.stats(), { notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 0 });
      assert.equal(await countRows(db.sequelize, 'SELECT COUNT(*) AS n FROM integration_event_log'), 0);
      assert.equal(await User.count(), 0);
      assert.deepEqual(publisher.messages, []);
    };

    bad.forEach(([name, make, reason], i) => {
      it(`publish() refuses ${name} with an EventValidationError and writes nothing`, async () => {
        await assert.rejects(outbox.bus.publish(make()), (err: unknown) => err instanceof EventValidationError && reason.test(err.message));
        await assert.rejects(
          outbox.runInUnitOfWork(async () => {
            await User.create({ account: `uow${i}` });
            await outbox.bus.publish(make());
          }),
          (err: unknown) => err instanceof EventValidationError && reason.test(err.message),
        );
        // One bad event among good ones: none of them is written.
        await assert.rejects(outbox.bus.publishAll([new RegisterUserEvent('ok', '1'), make()]), EventValidationError);
        refused += 3;
        await nothingWritten();
      });

      it(`the middleware rolls back a request that publishes ${name}: a clear 400, no user, no row`, async () => {
        const res = await send(agent, `${url}/register/${i}`, { headers: { 'content-type': 'application/json', 'content-length': '2' }, body: '{}' });
        assert.equal(res.status, 400, res.text);
        assert.equal((res.json as { error: string }).error, 'EventValidationError');
        assert.match((res.json as { reason: string }).reason, reason);
        refused += 1;
        await nothingWritten();
      });
    });
  });
}
