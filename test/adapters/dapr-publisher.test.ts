import assert from 'node:assert/strict';
import express from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import request from 'supertest';
import { QueryTypes } from 'sequelize';
import { CommunicationProtocolEnum, DaprClient, LogLevel } from '@dapr/dapr';
import { DaprPublisher, OutboxConfigError, PublishError, type DaprPublisherOptions } from '../../src';
import { type OutboxMessage } from '../../src/extend';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { createTestService, type TestService } from '../support/app';
import { sub, TestApp } from '../emulator/helpers';
import { bulkEntryJson, cloudEventJson, cloudEventOf } from '../../src/adapters/dapr/publish-requests';

function message(over: Partial<OutboxMessage> = {}): OutboxMessage {
  const id = over.id ?? `evt-${Math.random().toString(16).slice(2)}`;
  return {
    id,
    topic: 'orders',
    pubsubName: 'pubsub',
    eventTypeName: 'OrderPlaced',
    content: JSON.stringify({ id, topic: 'orders', amount: 3 }),
    creationTime: Date.now(),
    ...over,
  };
}

const quiet = (): void => undefined;
const silent = { error: quiet, warn: quiet, info: quiet, verbose: quiet, debug: quiet };

/** The two ways DaprPublisher reaches the sidecar: its own HTTP calls, or an app's DaprClient. */
const transports = [
  { name: 'node:http, the default', create: (options: DaprPublisherOptions) => new DaprPublisher(options), stopClients: async () => {} },
  sdkTransport(),
];

function sdkTransport() {
  const clients: DaprClient[] = [];
  return {
    name: '@dapr/dapr DaprClient given as client',
    create(options: DaprPublisherOptions): DaprPublisher {
      const client = new DaprClient({
        daprHost: '127.0.0.1',
        daprPort: String(options.daprPort),
        communicationProtocol: CommunicationProtocolEnum.HTTP,
        ...(options.daprApiToken ? { daprApiToken: options.daprApiToken } : {}),
        isKeepAlive: true,
        // The SDK logs a failed publish at error level; the tests assert on the rejection instead.
        logger: { level: LogLevel.Error, service: silent },
      });
      clients.push(client);
      return new DaprPublisher({ ...options, client });
    },
    /** A DaprClient given to the publisher belongs to the app: the publisher does not stop it. */
    async stopClients(): Promise<void> {
      await Promise.all(clients.splice(0).map((c) => c.stop()));
    },
  };
}

for (const transport of transports) {
  describe(`DaprPublisher against the sidecar emulator (${transport.name})`, () => {
    let emu: DaprEmulator;
    let publisher: DaprPublisher;

    beforeEach(async () => {
      emu = await DaprEmulator.start({ appId: 'users' });
      publisher = transport.create({ daprPort: emu.port, timeoutMs: 5000 });
    });
    afterEach(async () => {
      await publisher.close();
      await transport.stopClients();
      await emu.stop();
    });

    it('publishes the event as JSON data with the CloudEvent id pinned to the event id', async () => {
      const m = message();
      await publisher.publish(m);
      const [record] = emu.publishes;
      assert.equal(record?.status, 204);
      assert.equal(record?.envelope?.id, m.id);
      assert.deepEqual(record?.envelope?.data, JSON.parse(m.content));
      assert.equal(record?.envelope?.datacontenttype, 'application/json');
      assert.equal(record?.envelope?.source, 'users');
      assert.equal(record?.envelope?.topic, 'orders');
    });

    it('keeps the same CloudEvent id on every attempt of an event', async () => {
      const m = message();
      emu.faults.failNextPublishes(1);
      await assert.rejects(publisher.publish(m), PublishError);
      await publisher.publish(m);
      assert.deepEqual(emu.publishes.map((p) => p.status), [500, 204]);
      assert.equal(emu.publishes[1]?.envelope?.id, m.id);
    });

    it('passes the trace context on', async () => {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      await publisher.publish(message({ traceparent, tracestate: 'congo=t61rcWkgMzE' }));
      const env = emu.publishes[0]?.envelope;
      assert.equal(env?.traceparent, traceparent);
      assert.equal(env?.traceid, traceparent);
      assert.equal(env?.tracestate, 'congo=t61rcWkgMzE');
    });

    it('turns refusals into rejections: transient for 5xx, permanent for 4xx', async () => {
      emu.faults.failNextPublishes(1);
      await assert.rejects(publisher.publish(message()), (err: unknown) => err instanceof PublishError && !err.permanent && err.status === 500);
      await assert.rejects(publisher.publish(message({ pubsubName: 'nope' })), (err: unknown) => err instanceof PublishError && err.permanent && err.status === 404 && /ERR_PUBSUB_NOT_FOUND/.test(err.message));
    });

    it('bulk-publishes with ids pinned and reads partial failures from the sidecar\'s answer', async () => {
      const batch = [message(), message(), message()];
      emu.faults.failNextPublishes(1);
      const result = await publisher.publishBulk(batch);
      assert.equal(result.failed.length, 1);
      const failedId = result.failed[0]!.id;
      assert.ok(batch.some((m) => m.id === failedId));
      const stored = emu.publishes.filter((p) => p.accepted).map((p) => p.envelope?.id);
      assert.deepEqual(stored.sort(), batch.map((m) => m.id).filter((id) => id !== failedId).sort());
      const retry = await publisher.publishBulk(batch.filter((m) => m.id === failedId));
      assert.deepEqual(retry.failed, []);
    });

    it('fails only the entry whose content is not JSON, permanently, and publishes the rest of the batch', async () => {
      const good = [message(), message()];
      const bad = message({ content: '{not json' });
      const result = await publisher.publishBulk([good[0]!, bad, good[1]!]);
      assert.deepEqual(result.failed.map((f) => f.id), [bad.id]);
      assert.ok(result.failed[0]!.error instanceof PublishError && result.failed[0]!.error.permanent);
      assert.deepEqual(emu.publishes.filter((p) => p.accepted).map((p) => p.envelope?.id).sort(), good.map((m) => m.id).sort());
    });

    it('fails with a timeout instead of hanging when the sidecar does not answer in time', async () => {
      const slow = transport.create({ daprPort: emu.port, timeoutMs: 100 });
      await slow.publish(message()); // the client has started
      emu.faults.slowBroker(1000);
      await assert.rejects(slow.publish(message()), /timed out after 100 ms/);
      await emu.idle();
      await slow.close();
    });

    describe('topics and pubsub names with URL-special characters', () => {
      const topics = ['orders#eu', 'orders?region=eu', 'rate 100%', 'eu/orders#1', 'a+b', '50%/off', '%', 'café & co'];

      it('publishes one event to exactly its topic', async () => {
        for (const topic of topics) await publisher.publish(message({ topic }));
        assert.deepEqual(emu.publishes.map((p) => [p.status, p.pubsubName, p.topic, p.envelope?.topic]), topics.map((t) => [204, 'pubsub', t, t]));
      });

      it('bulk-publishes to exactly its topic', async () => {
        for (const topic of topics) assert.deepEqual(await publisher.publishBulk([message({ topic }), message({ topic })]), { failed: [] });
        assert.deepEqual(emu.publishes.map((p) => [p.status, p.bulk, p.topic]), topics.flatMap((t) => [[204, true, t], [204, true, t]]));
      });

      it('encodes the pubsub name too', async () => {
        await emu.stop();
        emu = await DaprEmulator.start({ appId: 'users', pubsubs: ['bus 100%'] });
        await publisher.close();
        publisher = transport.create({ daprPort: emu.port, timeoutMs: 5000, pubsubName: 'bus 100%' });
        await publisher.publish(message({ pubsubName: 'bus 100%', topic: 'orders#eu' }));
        await publisher.publishBulk([message({ pubsubName: 'bus 100%', topic: 'a b' }), message({ pubsubName: 'bus 100%', topic: 'a b' })]);
        assert.deepEqual(emu.publishes.map((p) => [p.status, p.pubsubName, p.topic]), [[204, 'bus 100%', 'orders#eu'], [204, 'bus 100%', 'a b'], [204, 'bus 100%', 'a b']]);
      });
    });

    it('fails a single event whose content is not JSON permanently, without a request', async () => {
      await assert.rejects(publisher.publish(message({ content: '{not json' })), (err: unknown) => err instanceof PublishError && err.permanent);
      assert.deepEqual(emu.publishes, []);
    });

    it('fails transiently when no sidecar listens', async () => {
      const port = emu.port;
      await emu.stop();
      // The DaprClient waits for a sidecar to appear; the timeout ends that wait.
      const absent = transport.create({ daprPort: port, timeoutMs: 500 });
      await assert.rejects(absent.publish(message()), (err: unknown) => err instanceof PublishError && !err.permanent && err.status === undefined);
      await assert.rejects(absent.publishBulk([message(), message()]), (err: unknown) => err instanceof PublishError && !err.permanent);
      await absent.close();
      emu = await DaprEmulator.start({ appId: 'users' });
    });

    it('sends the API token from options', async () => {
      const secured = await DaprEmulator.start({ appId: 'users', apiToken: 's3cret' });
      const good = transport.create({ daprPort: secured.port, daprApiToken: 's3cret' });
      await good.publish(message());
      assert.equal(secured.publishes.length, 1);
      await good.close();
      await secured.stop();
    });

    describe('keyed messages (an ordering key and a sequence number)', () => {
      let app: TestApp;
      const bodies = (): Array<Record<string, unknown>> => app.received.map((r) => r.json as Record<string, unknown>);

      beforeEach(async () => {
        app = await TestApp.start([sub('orders', '/orders')]);
        await emu.attachApp({ appId: 'billing', appUrl: app.url });
      });
      afterEach(async () => {
        await app.close();
      });

      it('reach the subscriber with partitionkey and sequence, and the same id and data as unkeyed ones', async () => {
        const m = message({ orderingKey: 'customer-42', sequence: 7 });
        await publisher.publish(m);
        await emu.idle();
        const [record] = emu.publishes;
        assert.equal(record?.status, 204);
        assert.equal(record?.contentType, 'application/cloudevents+json');
        const [body] = bodies();
        assert.equal(body?.id, m.id);
        assert.deepEqual(body?.data, JSON.parse(m.content));
        assert.equal(body?.datacontenttype, 'application/json');
        assert.equal(body?.partitionkey, 'customer-42');
        assert.equal(body?.sequence, '7');
        assert.equal(body?.topic, 'orders');
        assert.equal(body?.pubsubname, 'pubsub');
      });

      it('pass the key to the broker as partitionKey metadata by default', async () => {
        const m = message({ orderingKey: 'customer-42', sequence: 1 });
        await publisher.publish(m);
        assert.equal(emu.publishes[0]?.metadata.partitionKey, 'customer-42');
        assert.equal(emu.publishes[0]?.metadata['cloudevent.id'], m.id);
      });

      it('pass the key under every orderingKeyMetadata key', async () => {
        const sessions = transport.create({ daprPort: emu.port, orderingKeyMetadata: ['partitionKey', 'SessionId'] });
        await sessions.publish(message({ orderingKey: 'k é/1', sequence: 3 }));
        await sessions.close();
        const { metadata } = emu.publishes[0]!;
        assert.equal(metadata.partitionKey, 'k é/1');
        assert.equal(metadata.SessionId, 'k é/1');
      });

      it('pass no key metadata with orderingKeyMetadata [], the attributes still', async () => {
        const none = transport.create({ daprPort: emu.port, orderingKeyMetadata: [] });
        await none.publish(message({ orderingKey: 'k', sequence: 2 }));
        await none.close();
        await emu.idle();
        assert.equal(Object.prototype.hasOwnProperty.call(emu.publishes[0]!.metadata, 'partitionKey'), false);
        assert.equal(bodies()[0]?.partitionkey, 'k');
      });

      it('keep the trace context next to the ordering attributes', async () => {
        const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        await publisher.publish(message({ orderingKey: 'k', sequence: 9, traceparent, tracestate: 'congo=t61rcWkgMzE' }));
        await emu.idle();
        const [body] = bodies();
        assert.equal(body?.traceparent, traceparent);
        assert.equal(body?.tracestate, 'congo=t61rcWkgMzE');
        assert.equal(app.received[0]?.headers.traceparent, traceparent);
        assert.equal(body?.sequence, '9');
      });

      it('carry the attributes and the key metadata when handed to publishBulk', async () => {
        const keyed = [message({ orderingKey: 'k', sequence: 1 }), message({ orderingKey: 'k', sequence: 2 })];
        const plain = message();
        assert.deepEqual(await publisher.publishBulk([keyed[0]!, plain, keyed[1]!]), { failed: [] });
        await emu.idle();
        const byId = new Map(bodies().map((b) => [b.id, b]));
        assert.deepEqual([keyed[0]!, keyed[1]!, plain].map((m) => [byId.get(m.id)?.partitionkey, byId.get(m.id)?.sequence]), [['k', '1'], ['k', '2'], [undefined, undefined]]);
        assert.deepEqual(byId.get(keyed[1]!.id)?.data, JSON.parse(keyed[1]!.content));
        const metadataOf = new Map(emu.publishes.map((p) => [p.envelope?.id, p.metadata]));
        assert.deepEqual(metadataOf.get(keyed[0]!.id), { partitionKey: 'k' });
        assert.deepEqual(metadataOf.get(plain.id), {});
      });

      it('fail permanently, without a request, when the sequence is not a positive integer', async () => {
        for (const sequence of [0, -1, 1.5, Number.NaN]) {
          await assert.rejects(publisher.publish(message({ orderingKey: 'k', sequence })), (err: unknown) => err instanceof PublishError && err.permanent && /not a positive integer/.test(err.message));
        }
        const bad = message({ orderingKey: 'k', sequence: 0 });
        const good = message({ orderingKey: 'k', sequence: 1 });
        const result = await publisher.publishBulk([bad, good]);
        assert.deepEqual(result.failed.map((f) => f.id), [bad.id]);
        assert.deepEqual(emu.publishes.map((p) => p.envelope?.id), [good.id]);
      });

      it('leave unkeyed messages as they were: JSON, no ordering attributes, no key metadata', async () => {
        const messages = [message(), message({ orderingKey: null, sequence: null }), message({ orderingKey: 'k', sequence: null }), message({ orderingKey: null, sequence: 4 })];
        for (const m of messages) await publisher.publish(m);
        await emu.idle();
        assert.deepEqual(
          emu.publishes.map((p) => [p.contentType, p.metadata]),
          messages.map((m) => ['application/json', { 'cloudevent.id': m.id }]),
        );
        const paths = emu.requests.filter((r) => r.path.includes('/publish/')).map((r) => r.path);
        assert.deepEqual(paths, messages.map((m) => `/v1.0/publish/pubsub/orders?metadata.cloudevent.id=${m.id}`));
        for (const body of bodies()) {
          assert.equal('partitionkey' in body, false);
          assert.equal('sequence' in body, false);
          assert.equal(body.source, 'users');
        }
        assert.deepEqual(bodies().map((b) => b.id), messages.map((m) => m.id));
      });
    });
  });
}

describe('DaprPublisher: the default transport sends what the DaprClient sends', () => {
  let emu: DaprEmulator;
  beforeEach(async () => {
    emu = await DaprEmulator.start({ appId: 'users' });
  });
  afterEach(async () => {
    await sdkClients.stopClients();
    await emu.stop();
  });
  const sdkClients = sdkTransport();
  const traced = (id: string): OutboxMessage =>
    message({ id, topic: 'eu/orders #1', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: "a=1,b=2 3!'()~*", content: JSON.stringify({ id, note: 'café \u2028 "q"', n: [1, 2.5, null] }) });

  const keyed = (id: string, sequence: number): OutboxMessage => ({ ...traced(id), orderingKey: 'customer "42" é', sequence });

  async function sent(publisher: DaprPublisher): Promise<{ paths: string[]; envelopes: unknown[]; metadata: unknown[]; contentTypes: unknown[] }> {
    const [requestsBefore, publishesBefore] = [emu.requests.length, emu.publishes.length];
    await publisher.publish(traced('evt-1'));
    assert.deepEqual(await publisher.publishBulk([traced('evt-2'), message({ id: 'evt-3', topic: 'eu/orders #1' })]), { failed: [] });
    await publisher.publish(keyed('evt-4', 1));
    assert.deepEqual(await publisher.publishBulk([keyed('evt-5', 2), traced('evt-6')]), { failed: [] });
    await publisher.close();
    const publishes = emu.publishes.slice(publishesBefore);
    return {
      paths: emu.requests.slice(requestsBefore).filter((r) => r.path.includes('/publish/')).map((r) => r.path),
      envelopes: publishes.map((p) => ({ ...p.envelope, time: undefined })),
      metadata: publishes.map((p) => p.metadata),
      contentTypes: publishes.map((p) => p.contentType),
    };
  }

  it('the same paths, queries, metadata and stored envelopes, single and bulk, keyed or not', async () => {
    const own = await sent(new DaprPublisher({ daprPort: emu.port, orderingKeyMetadata: ['partitionKey', 'SessionId'] }));
    const sdk = await sent(sdkClients.create({ daprPort: emu.port, orderingKeyMetadata: ['partitionKey', 'SessionId'] }));
    assert.equal(own.paths.length, 4);
    assert.deepEqual(own, sdk);
    const keyedEnvelope = own.envelopes[3] as Record<string, unknown>;
    assert.deepEqual([keyedEnvelope.id, keyedEnvelope.partitionkey, keyedEnvelope.sequence], ['evt-4', 'customer "42" é', '1']);
    assert.deepEqual((own.metadata[3] as Record<string, string>).SessionId, 'customer "42" é');
  });
});

describe('DaprPublisher: the CloudEvent text spliced around the stored content', () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const cases: Array<[string, OutboxMessage]> = [
    ['unkeyed', message({ id: 'a"b', content: '{"x":[1,2.50,"\\u2028"]}' })],
    ['unkeyed with trace context', message({ traceparent, tracestate: 'a=1' })],
    ['unkeyed, a key without a sequence', message({ orderingKey: 'k', sequence: null })],
    ['keyed', message({ orderingKey: 'k "1" é', sequence: 12 })],
    ['keyed with trace context', message({ orderingKey: 'k', sequence: 3, traceparent })],
  ];

  for (const [name, m] of cases) {
    it(`is JSON.stringify of cloudEventOf and of the bulk entry (${name})`, () => {
      const data = JSON.parse(m.content) as unknown;
      assert.deepEqual(JSON.parse(cloudEventJson(m)), cloudEventOf(m, data));
      assert.equal(cloudEventJson(m), JSON.stringify(cloudEventOf(m, { $: 1 })).replace('{"$":1}', m.content));
      const entry: Record<string, unknown> = { entryId: m.id, contentType: 'application/cloudevents+json', event: cloudEventOf(m, { $: 1 }) };
      if (m.orderingKey != null && m.sequence != null) entry.metadata = { partitionKey: m.orderingKey, SessionId: m.orderingKey };
      assert.equal(bulkEntryJson(m, ['partitionKey', 'SessionId']), JSON.stringify(entry).replace('{"$":1}', m.content));
    });
  }

  it('keeps the unkeyed bulk entry as it was', () => {
    const m = message({ id: 'e1', content: '{"a":1}', traceparent, tracestate: 's' });
    const tp = JSON.stringify(traceparent);
    assert.equal(
      bulkEntryJson(m, ['partitionKey']),
      `{"entryId":"e1","contentType":"application/cloudevents+json","event":{"specversion":"1.0","id":"e1","datacontenttype":"application/json","data":{"a":1},"traceid":${tp},"traceparent":${tp},"tracestate":"s"}}`,
    );
  });
});

describe('DaprPublisher: orderingKeyMetadata', () => {
  it('is refused unless it is an array of metadata key names', () => {
    const invalid: unknown[] = ['partitionKey', null, [''], ['  '], [1], ['partitionKey', undefined], { 0: 'partitionKey' }];
    for (const value of invalid) {
      assert.throws(
        () => new DaprPublisher({ orderingKeyMetadata: value as string[] }),
        (err: unknown) => err instanceof OutboxConfigError && err.option === 'orderingKeyMetadata' && /array of metadata key names/.test(err.message),
        `accepted ${JSON.stringify(value)}`,
      );
    }
  });

  it('is refused when it names a key daprd reads itself', () => {
    for (const key of ['rawPayload', 'ttlInSeconds', 'cloudevent.id', 'CloudEvent.Type']) {
      assert.throws(() => new DaprPublisher({ orderingKeyMetadata: ['partitionKey', key] }), (err: unknown) => err instanceof OutboxConfigError && err.message.includes(JSON.stringify(key)));
    }
  });

  it('takes key names, none, or the default', async () => {
    for (const value of [undefined, [], ['partitionKey', 'SessionId'], ['key']]) await new DaprPublisher({ orderingKeyMetadata: value }).close();
  });
});

for (const kind of testDialects()) {
  describe(`publish on commit through the emulator (${kind})`, () => {
    let db: TestDb;
    let emu: DaprEmulator;
    let svc: TestService;
    let subscriber: Server;
    const received: Array<{ id: string; body: Record<string, unknown> }> = [];

    beforeEach(async () => {
      received.length = 0;
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'users' });
      const sub = express();
      sub.use(express.json({ type: ['application/json', 'application/cloudevents+json'] }));
      sub.get('/dapr/subscribe', (_req, res) => res.json([{ pubsubname: 'pubsub', topic: 'UserRegistered', route: '/on-registered' }]));
      sub.post('/on-registered', (req, res) => {
        received.push({ id: req.body.id, body: req.body });
        res.json({ status: 'SUCCESS' });
      });
      subscriber = sub.listen(0, '127.0.0.1');
      await new Promise((r) => subscriber.once('listening', r));
      await emu.attachApp({ appId: 'notifications', appUrl: `http://127.0.0.1:${(subscriber.address() as AddressInfo).port}` });
      svc = await createTestService(db.sequelize, { publisher: new DaprPublisher({ daprPort: emu.port }) });
    });
    afterEach(async () => {
      await svc.outbox.close();
      await emu.stop();
      await new Promise((r) => subscriber.close(r));
      await db.close();
    });

    it('the subscriber sees the event id as the CloudEvent id, and the event as data', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'alice', mobile: '13800000000' });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      await emu.idle();
      assert.equal(received.length, 1);
      const [row] = await db.sequelize.query('SELECT event_id, state FROM integration_event_log', { type: QueryTypes.SELECT });
      assert.equal(received[0]!.id, (row as { event_id: string }).event_id);
      assert.equal((row as { state: number }).state, 2);
      assert.equal((received[0]!.body.data as { account: string }).account, 'alice');
    });

    it('publishes the events of several requests in bulk calls, all delivered once', async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => request(svc.app).post('/users').send({ account: `u${i}`, mobile: '1', events: 3 })));
      await svc.outbox.drain();
      await emu.idle();
      assert.equal(received.length, 60);
      assert.equal(new Set(received.map((r) => r.id)).size, 60);
      assert.ok(emu.publishes.some((p) => p.bulk), 'bulk API used for requests with several events');
      assert.equal((await svc.outbox.stats()).published, 60);
    });
  });
}
