import assert from 'node:assert/strict';
import request from 'supertest';
import type { Model, ModelStatic } from 'sequelize';
import { createSubscriptionRouter, DropError, type TopicHandler, type TopicOptions } from '../../src';
import { runMigrations } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { appWith, daprEnvelope, defineEffect, deliveryHeaders, recordingLogger } from './helpers';

/** Each status rule of issue 4, without the inbox and with it on every test database. */
for (const mode of ['no inbox', ...testDialects()] as const) {
  describe(`subscription router: statuses (${mode})`, () => {
    const route = '/dapr-outbox/pubsub/orders';
    let db: TestDb | undefined;
    let Effect: ModelStatic<Model> | undefined;
    let logger: ReturnType<typeof recordingLogger>;

    before(async () => {
      if (mode === 'no inbox') return;
      db = await createTestDb(mode);
      await runMigrations(db.sequelize);
      Effect = defineEffect(db.sequelize);
      await Effect.sync();
    });
    after(async () => {
      await db?.close();
    });
    beforeEach(async () => {
      logger = recordingLogger();
      await Effect?.destroy({ where: {} });
    });

    function appFor(handler: TopicHandler, options?: TopicOptions) {
      const router = createSubscriptionRouter({ sequelize: db?.sequelize, appApiToken: null, logger });
      router.topic('pubsub', 'orders', handler, options);
      return appWith(router);
    }
    /** A handler that writes (when there is a database) and then does `then`. */
    const writing =
      (then: () => unknown): TopicHandler =>
      async (_data, ctx) => {
        await Effect?.create({ eventId: ctx.id });
        return then();
      };
    const deliver = (app: ReturnType<typeof appFor>, body = daprEnvelope(), headers = deliveryHeaders()) => request(app).post(route).set(headers).send(body);
    const effects = async () => (Effect ? Effect.count() : undefined);

    it('the handler resolves: 200 {"status":"SUCCESS"}', async () => {
      const res = await deliver(appFor(writing(() => undefined)));
      assert.equal(res.status, 200);
      assert.equal(res.text, '{"status":"SUCCESS"}');
      if (Effect) assert.equal(await effects(), 1);
    });

    it('the handler throws: 200 {"status":"RETRY"}, never SUCCESS, its writes rolled back', async () => {
      const res = await deliver(
        appFor(
          writing(() => {
            throw new Error('database down');
          }),
        ),
      );
      assert.equal(res.status, 200);
      assert.equal(res.text, '{"status":"RETRY"}');
      if (Effect) assert.equal(await effects(), 0);
      assert.ok(logger.entries.some((e) => e.level === 'error' && /handler failed; answering RETRY: database down/.test(e.message)));
    });

    it('the handler throws a non-Error value: RETRY', async () => {
      const res = await deliver(
        appFor(async () => {
          throw 'a string';
        }),
      );
      assert.deepEqual(res.body, { status: 'RETRY' });
    });

    it("the handler returns 'RETRY': RETRY, its writes rolled back", async () => {
      const res = await deliver(appFor(writing(() => 'RETRY')));
      assert.deepEqual(res.body, { status: 'RETRY' });
      if (Effect) assert.equal(await effects(), 0);
    });

    it('the handler throws DropError: DROP, its writes rolled back', async () => {
      const res = await deliver(
        appFor(
          writing(() => {
            throw new DropError('unknown customer');
          }),
        ),
      );
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { status: 'DROP' });
      if (Effect) assert.equal(await effects(), 0);
      assert.ok(logger.warnings().some((m) => /unknown customer/.test(m)));
    });

    it("the handler returns 'DROP': DROP", async () => {
      const res = await deliver(appFor(writing(() => 'DROP')));
      assert.deepEqual(res.body, { status: 'DROP' });
      if (Effect) assert.equal(await effects(), 0);
    });

    it('the validation function returns false: DROP, the handler does not run', async () => {
      let ran = false;
      const res = await deliver(appFor(async () => void (ran = true), { validate: (d) => typeof (d as { b?: unknown }).b === 'string' }));
      assert.deepEqual(res.body, { status: 'DROP' });
      assert.equal(ran, false);
      assert.ok(logger.warnings().some((m) => /validation failed/.test(m)));
    });

    it('the validation function throws: DROP', async () => {
      const res = await deliver(
        appFor(async () => {}, {
          validate: () => {
            throw new Error('b is required');
          },
        }),
      );
      assert.deepEqual(res.body, { status: 'DROP' });
      assert.ok(logger.warnings().some((m) => /b is required/.test(m)));
    });

    it("the validation function returns 'RETRY' (it cannot decide now): RETRY, the handler does not run", async () => {
      let runs = 0;
      const res = await deliver(appFor(async () => void runs++, { validate: () => 'RETRY' }));
      assert.deepEqual(res.body, { status: 'RETRY' });
      assert.equal(runs, 0);
    });

    it('a schema (parse) rejects: DROP; accepts: the handler gets the parsed value', async () => {
      const schema = {
        parse(d: unknown) {
          const a = (d as { a?: unknown }).a;
          if (typeof a !== 'number') throw new Error('a must be a number');
          return { a, parsed: true };
        },
      };
      let got: unknown;
      const app = appFor(async (d) => void (got = d), { validate: schema });
      assert.deepEqual((await deliver(app)).body, { status: 'SUCCESS' });
      assert.deepEqual(got, { a: 1, parsed: true });
      assert.deepEqual((await deliver(app, daprEnvelope({ data: { a: 'x' } }))).body, { status: 'DROP' });
    });

    it('a schema (validate -> { error }) rejects: DROP', async () => {
      const schema = { validate: (d: unknown) => ((d as { a?: unknown }).a === 2 ? { value: d } : { value: d, error: new Error('"a" must be 2') }) };
      const app = appFor(async () => {}, { validate: schema });
      assert.deepEqual((await deliver(app)).body, { status: 'DROP' });
      assert.deepEqual((await deliver(app, daprEnvelope({ data: { a: 2 } }))).body, { status: 'SUCCESS' });
    });

    it('a schema (safeParse) rejects: DROP', async () => {
      const schema = { safeParse: (d: unknown) => ((d as { a?: unknown }).a === 1 ? { success: true, data: d } : { success: false, error: 'bad a' }) };
      const app = appFor(async () => {}, { validate: schema });
      assert.deepEqual((await deliver(app)).body, { status: 'SUCCESS' });
      assert.deepEqual((await deliver(app, daprEnvelope({ data: { a: 3 } }))).body, { status: 'DROP' });
    });

    describe('malformed deliveries: 200 DROP with the reason logged', () => {
      const cases: Array<[string, string | Buffer, Record<string, string>, RegExp]> = [
        ['invalid JSON', '{"id":"1",', deliveryHeaders(), /invalid JSON/],
        ['a wrong content type', 'hello', deliveryHeaders({ 'content-type': 'text/plain' }), /unsupported Content-Type 'text\/plain'/],
        ['a JSON array', '[1,2]', deliveryHeaders(), /must be a JSON object, got an array/],
        ['a CloudEvent without id', daprEnvelope({ id: undefined }), deliveryHeaders(), /'id' must be a non-empty string, got nothing/],
        ['a CloudEvent with a numeric id', daprEnvelope({ id: 5 as never }), deliveryHeaders(), /'id' must be a non-empty string, got number/],
        ['a CloudEvent without specversion', daprEnvelope({ specversion: undefined }), deliveryHeaders(), /'specversion' must be a non-empty string/],
        ['bad base64', daprEnvelope({ data: undefined, data_base64: 'not base64!!', datacontenttype: 'application/octet-stream' }), deliveryHeaders(), /not valid base64/],
        ['base64 of invalid JSON with a JSON datacontenttype', daprEnvelope({ data: undefined, data_base64: Buffer.from('{x').toString('base64') }), deliveryHeaders(), /invalid JSON/],
        ['both data and data_base64', daprEnvelope({ data_base64: 'AA==' }), deliveryHeaders(), /both 'data' and 'data_base64'/],
        ['an empty body', '', deliveryHeaders(), /empty body/],
        ['a binary-mode event without ce-source', '{}', { 'content-type': 'application/json', 'ce-id': '1', 'ce-specversion': '1.0', 'ce-type': 't' }, /without a 'ce-source' header/],
        ['binary-mode invalid JSON', '{', { 'content-type': 'application/json', 'ce-id': '1', 'ce-specversion': '1.0', 'ce-type': 't', 'ce-source': 's' }, /invalid JSON/],
        ['a compressed body', Buffer.from([0x1f, 0x8b]), deliveryHeaders({ 'content-encoding': 'gzip' }), /unsupported Content-Encoding 'gzip'/],
      ];
      for (const [what, body, headers, reason] of cases) {
        it(what, async () => {
          let ran = false;
          const res = await deliver(appFor(async () => void (ran = true)), body as string, headers);
          assert.equal(res.status, 200);
          assert.deepEqual(res.body, { status: 'DROP' });
          assert.equal(ran, false);
          assert.ok(
            logger.warnings().some((m) => m.startsWith('dropping a malformed delivery') && reason.test(m)),
            `expected a warning matching ${reason}, got ${JSON.stringify(logger.warnings())}`,
          );
        });
      }

      it('a body over maxBodyBytes', async () => {
        const router = createSubscriptionRouter({ sequelize: db?.sequelize, appApiToken: null, logger, maxBodyBytes: 1024 });
        let ran = false;
        router.topic('pubsub', 'orders', async () => void (ran = true));
        const big = daprEnvelope({ data: { text: 'x'.repeat(300_000) } });
        const res = await deliver(appWith(router), big);
        assert.deepEqual(res.body, { status: 'DROP' });
        assert.equal(ran, false);
        assert.ok(logger.warnings().some((m) => /larger than 1024 bytes/.test(m)));
        // The same limit holds when the sender does not say the length up front (chunked).
        const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const app = appWith(router);
          const server = app.listen(0, '127.0.0.1', () => {
            const { port } = server.address() as { port: number };
            const req = require('node:http').request({ port, host: '127.0.0.1', method: 'POST', path: route, headers: { 'content-type': 'application/cloudevents+json' } }, (r: import('node:http').IncomingMessage) => {
              let text = '';
              r.on('data', (c: Buffer) => (text += c));
              r.on('end', () => {
                server.close();
                resolve({ status: r.statusCode ?? 0, body: text });
              });
            });
            req.on('error', reject);
            for (let i = 0; i < 10; i++) req.write(big.slice(i * 30_000, (i + 1) * 30_000));
            req.end(big.slice(300_000));
          });
        });
        assert.equal(chunked.status, 200);
        assert.equal(chunked.body, '{"status":"DROP"}');
      });
    });

    it('an unknown route under the prefix: 404', async () => {
      const res = await request(appFor(async () => {}))
        .post('/dapr-outbox/pubsub/other')
        .set(deliveryHeaders())
        .send(daprEnvelope());
      assert.equal(res.status, 404);
    });
  });
}
