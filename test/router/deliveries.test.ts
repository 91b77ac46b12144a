import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import type { Model, ModelStatic } from 'sequelize';
import { createSubscriptionRouter, type DeliveryContext, type SubscriptionRouter, type TopicOptions } from '../../src';
import { runMigrations } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { appWith, bulkBody, cloudEvent, daprEnvelope, defineEffect, deliveryHeaders, recordingLogger, TRACEPARENT } from './helpers';

// Express 4 is installed under the alias `express4`, to check the router on both majors.
const express4 = require('express4') as typeof import('express');

interface Seen {
  data: unknown;
  ctx: DeliveryContext;
}

/** Reading every delivery format daprd (or a CloudEvents sender) uses, with and without the inbox. */
for (const mode of ['no inbox', ...testDialects()] as const) {
  describe(`subscription router: delivery formats (${mode})`, () => {
    const route = '/dapr-outbox/pubsub/orders';
    let db: TestDb | undefined;
    let Effect: ModelStatic<Model> | undefined;
    let seen: Seen[];
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
      seen = [];
      logger = recordingLogger();
      await Effect?.destroy({ where: {} });
    });

    function routerFor(options?: TopicOptions): SubscriptionRouter {
      const router = createSubscriptionRouter({ sequelize: db?.sequelize, appApiToken: null, logger });
      router.topic(
        'pubsub',
        'orders',
        async (data, ctx) => {
          seen.push({ data, ctx });
          await Effect?.create({ eventId: ctx.id });
        },
        options,
      );
      return router;
    }

    it('reads the structured envelope daprd sends, byte for byte, and hands over the whole CloudEvent', async () => {
      const id = randomUUID();
      const body =
        `{"data":{"a":1},"datacontenttype":"application/json","id":"${id}","pubsubname":"pubsub","source":"checkout",` +
        `"specversion":"1.0","time":"2024-03-27T23:47:53Z","topic":"orders","traceid":"${TRACEPARENT}","traceparent":"${TRACEPARENT}",` +
        `"tracestate":"","type":"com.dapr.event.sent"}`;
      const res = await request(appWith(routerFor()))
        .post(route)
        .set({ 'content-type': 'application/cloudevents+json', traceparent: TRACEPARENT, pubsubname: 'pubsub' })
        .send(body);
      assert.equal(res.status, 200);
      assert.equal(res.text, '{"status":"SUCCESS"}');
      assert.equal(seen.length, 1);
      const { data, ctx } = seen[0]!;
      assert.deepEqual(data, { a: 1 });
      assert.equal(ctx.id, id);
      assert.equal(ctx.topic, 'orders');
      assert.equal(ctx.pubsubName, 'pubsub');
      assert.equal(ctx.route, route);
      assert.deepEqual(ctx.event, JSON.parse(body));
      assert.equal(ctx.event.source, 'checkout');
      assert.equal(ctx.event.type, 'com.dapr.event.sent');
      assert.equal(ctx.event.time, '2024-03-27T23:47:53Z');
      assert.equal(ctx.event.traceparent, TRACEPARENT);
      assert.equal(ctx.headers.traceparent, TRACEPARENT);
      assert.equal(ctx.headers.pubsubname, 'pubsub');
      assert.equal(ctx.rawBody?.toString('utf8'), body);
      if (mode === 'no inbox') {
        assert.equal(ctx.consumer, undefined);
      } else {
        assert.equal(ctx.consumer, 'pubsub/orders');
        assert.equal(await Effect!.count({ where: { eventId: id } }), 1);
      }
    });

    it('reads a structured CloudEvent sent as application/json', async () => {
      const res = await request(appWith(routerFor()))
        .post(route)
        .set('content-type', 'application/json; charset=utf-8')
        .send(daprEnvelope({ data: { b: 'x' } }));
      assert.deepEqual(res.body, { status: 'SUCCESS' });
      assert.deepEqual(seen[0]!.data, { b: 'x' });
    });

    it('reads text data as a string and keeps extensions and subject', async () => {
      const res = await request(appWith(routerFor()))
        .post(route)
        .set(deliveryHeaders())
        .send(daprEnvelope({ data: 'hello', datacontenttype: 'text/plain', subject: 's1', myext: 'v' }));
      assert.deepEqual(res.body, { status: 'SUCCESS' });
      assert.equal(seen[0]!.data, 'hello');
      assert.equal(seen[0]!.ctx.event.subject, 's1');
      assert.equal(seen[0]!.ctx.event.myext, 'v');
    });

    it('reads a binary-mode CloudEvent (ce-* headers, the body is the data)', async () => {
      const id = randomUUID();
      const res = await request(appWith(routerFor()))
        .post(route)
        .set({
          'content-type': 'application/json',
          'ce-specversion': '1.0',
          'ce-id': id,
          'ce-source': 'https%3A%2F%2Fexample.com%2Fcheckout',
          'ce-type': 'com.example.order.placed',
          'ce-time': '2024-03-27T23:47:53Z',
          'ce-traceparent': TRACEPARENT,
          'ce-topic': 'orders',
        })
        .send('{"orderId":42}');
      assert.deepEqual(res.body, { status: 'SUCCESS' });
      const { data, ctx } = seen[0]!;
      assert.deepEqual(data, { orderId: 42 });
      assert.equal(ctx.id, id);
      assert.equal(ctx.event.source, 'https://example.com/checkout');
      assert.equal(ctx.event.type, 'com.example.order.placed');
      assert.equal(ctx.event.datacontenttype, 'application/json');
      assert.equal(ctx.event.traceparent, TRACEPARENT);
      assert.deepEqual(ctx.event.data, { orderId: 42 });
    });

    it('reads binary-mode text and octet-stream bodies', async () => {
      const app = appWith(routerFor());
      const ce = { 'ce-specversion': '1.0', 'ce-source': 's', 'ce-type': 't' };
      await request(app)
        .post(route)
        .set({ ...ce, 'ce-id': randomUUID(), 'content-type': 'text/plain; charset=utf-8' })
        .send('plain text');
      await request(app)
        .post(route)
        .set({ ...ce, 'ce-id': randomUUID(), 'content-type': 'application/octet-stream' })
        .send(Buffer.from([0, 1, 2, 255]));
      assert.equal(seen[0]!.data, 'plain text');
      assert.deepEqual(seen[1]!.data, Buffer.from([0, 1, 2, 255]));
    });

    it('turns data_base64 into a Buffer, or parses it when datacontenttype is JSON', async () => {
      const app = appWith(routerFor());
      const bytes = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]);
      const r1 = await request(app)
        .post(route)
        .set(deliveryHeaders())
        .send(daprEnvelope({ data: undefined, datacontenttype: 'application/octet-stream', data_base64: bytes.toString('base64') }));
      const r2 = await request(app)
        .post(route)
        .set(deliveryHeaders())
        .send(daprEnvelope({ data: undefined, datacontenttype: 'application/json', data_base64: Buffer.from('{"n":[1,2]}').toString('base64') }));
      assert.deepEqual([r1.body, r2.body], [{ status: 'SUCCESS' }, { status: 'SUCCESS' }]);
      assert.ok(Buffer.isBuffer(seen[0]!.data));
      assert.deepEqual(seen[0]!.data, bytes);
      assert.deepEqual(seen[1]!.data, { n: [1, 2] });
    });

    it('reads the raw-payload envelope daprd builds for rawPayload subscriptions', async () => {
      const payload = Buffer.from('{"legacy":true}');
      const id = randomUUID();
      // FromRawPayload: these keys, in this order (a Go struct, not a sorted map).
      const body =
        `{"id":"${id}","specversion":"1.0","datacontenttype":"application/octet-stream","source":"Dapr",` +
        `"type":"com.dapr.event.sent","topic":"orders","pubsubname":"pubsub","data_base64":"${payload.toString('base64')}"}`;
      const res = await request(appWith(routerFor({ rawPayload: true })))
        .post(route)
        .set(deliveryHeaders({ rawpayload: 'true' }))
        .send(body);
      assert.deepEqual(res.body, { status: 'SUCCESS' });
      assert.deepEqual(seen[0]!.data, payload);
      assert.equal(seen[0]!.ctx.id, id);
      assert.equal(seen[0]!.ctx.event.source, 'Dapr');
    });

    it('answers a bulk delivery with one status per entry, in order, each through the handler', async () => {
      const router = createSubscriptionRouter({ sequelize: db?.sequelize, appApiToken: null, logger });
      router.topic(
        'pubsub',
        'orders',
        async (data: { n: number }, ctx) => {
          seen.push({ data, ctx });
          if (data.n === 2) throw new Error('entry 2 fails');
          if (data.n === 3) return 'DROP';
          await Effect?.create({ eventId: ctx.id });
        },
        { bulk: { maxMessagesCount: 10, maxAwaitDurationMs: 100 } },
      );
      const raw = Buffer.from('raw bytes');
      const body = bulkBody([
        { entryId: 'e1', event: cloudEvent({ data: { n: 1 } }) },
        { entryId: 'e2', event: cloudEvent({ data: { n: 2 } }) },
        { entryId: 'e3', event: cloudEvent({ data: { n: 3 } }) },
        { entryId: 'e4', event: cloudEvent({ id: undefined, data: { n: 4 } }) },
        { entryId: 'e5', event: raw.toString('base64'), contentType: 'application/octet-stream' },
        { entryId: 'e6', event: JSON.stringify(cloudEvent({ data: { n: 6 } })), contentType: 'application/cloudevents+json' },
      ]);
      const res = await request(appWith(router)).post(route).set({ 'content-type': 'application/json', pubsubname: 'pubsub' }).send(body);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, {
        statuses: [
          { entryId: 'e1', status: 'SUCCESS' },
          { entryId: 'e2', status: 'RETRY' },
          { entryId: 'e3', status: 'DROP' },
          { entryId: 'e4', status: 'DROP' },
          { entryId: 'e5', status: 'SUCCESS' },
          { entryId: 'e6', status: 'SUCCESS' },
        ],
      });
      // With the inbox the entries share one transaction: entry 2's failure rolls it back, and
      // the others run again in the next one (each behind a savepoint there).
      assert.deepEqual(
        seen.map((s) => s.ctx.bulk?.entryId),
        db ? ['e1', 'e2', 'e1', 'e3', 'e5', 'e6'] : ['e1', 'e2', 'e3', 'e5', 'e6'],
      );
      const e5 = seen.find((s) => s.ctx.bulk?.entryId === 'e5')!;
      assert.deepEqual(e5.data, raw);
      assert.equal(e5.ctx.id, 'e5');
      assert.ok(logger.warnings().some((m) => /malformed bulk entry: not a CloudEvent: 'id'/.test(m)));
      if (Effect) assert.equal(await Effect.count(), 3);
    });

    it('answers 404 (daprd drops every entry) to a bulk delivery it cannot read on a bulk route', async () => {
      const res = await request(appWith(routerFor({ bulk: true })))
        .post(route)
        .set('content-type', 'application/json')
        .send('{"entries":[');
      assert.equal(res.status, 404);
      assert.ok(logger.warnings().some((m) => /invalid JSON/.test(m)));
    });

    it('routes by rule path to the rule handler, and the rest to the topic handler', async () => {
      const byRule: unknown[] = [];
      const router = createSubscriptionRouter({ sequelize: db?.sequelize, appApiToken: null, logger });
      router.topic('pubsub', 'orders', async (data) => void seen.push({ data, ctx: undefined as never }), {
        rules: [{ match: 'event.type == "widget"', path: '/widgets', handler: async (data) => void byRule.push(data) }],
      });
      const app = appWith(router);
      await request(app)
        .post('/widgets')
        .set(deliveryHeaders())
        .send(daprEnvelope({ type: 'widget', data: { w: 1 } }));
      await request(app).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(byRule, [{ w: 1 }]);
      assert.deepEqual(
        seen.map((s) => s.data),
        [{ a: 1 }],
      );
    });

    describe('with express.json() installed before the router', () => {
      it('reads application/cloudevents+json (which express.json leaves alone)', async () => {
        const res = await request(appWith(express.json(), routerFor())).post(route).set(deliveryHeaders()).send(daprEnvelope());
        assert.deepEqual(res.body, { status: 'SUCCESS' });
        assert.deepEqual(seen[0]!.data, { a: 1 });
      });

      it('takes the object express.json parsed from application/json', async () => {
        const res = await request(appWith(express.json(), routerFor()))
          .post(route)
          .set('content-type', 'application/json')
          .send(daprEnvelope({ data: { parsed: 'by express' } }));
        assert.deepEqual(res.body, { status: 'SUCCESS' });
        assert.deepEqual(seen[0]!.data, { parsed: 'by express' });
        assert.equal(seen[0]!.ctx.rawBody, undefined);
      });

      it('takes a bulk delivery express.json parsed', async () => {
        const res = await request(appWith(express.json(), routerFor({ bulk: true })))
          .post(route)
          .set('content-type', 'application/json')
          .send(bulkBody([{ entryId: 'x', event: cloudEvent() }]));
        assert.deepEqual(res.body, { statuses: [{ entryId: 'x', status: 'SUCCESS' }] });
      });

      it('takes the bytes express.raw() kept, for a binary-mode delivery', async () => {
        const res = await request(appWith(express.raw({ type: '*/*' }), routerFor()))
          .post(route)
          .set({ 'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': randomUUID(), 'ce-source': 's', 'ce-type': 't' })
          .send('{"raw":1}');
        assert.deepEqual(res.body, { status: 'SUCCESS' });
        assert.deepEqual(seen[0]!.data, { raw: 1 });
      });
    });

    describe('in an Express 4 app', () => {
      for (const withJson of [false, true]) {
        it(`reads structured and application/json deliveries ${withJson ? 'with' : 'without'} express.json()`, async () => {
          const app = express4();
          if (withJson) app.use(express4.json());
          app.use(routerFor() as never);
          const r1 = await request(app).post(route).set(deliveryHeaders()).send(daprEnvelope({ data: { v: 1 } }));
          const r2 = await request(app)
            .post(route)
            .set('content-type', 'application/json')
            .send(daprEnvelope({ data: { v: 2 } }));
          const r3 = await request(app).get('/dapr/subscribe');
          assert.deepEqual([r1.body, r2.body], [{ status: 'SUCCESS' }, { status: 'SUCCESS' }]);
          assert.deepEqual(
            seen.map((s) => s.data),
            [{ v: 1 }, { v: 2 }],
          );
          assert.equal(r3.body[0].route, route);
        });
      }
    });
  });
}
