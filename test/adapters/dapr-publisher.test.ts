import assert from 'node:assert/strict';
import express from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import request from 'supertest';
import { QueryTypes } from 'sequelize';
import { CommunicationProtocolEnum, DaprClient, LogLevel } from '@dapr/dapr';
import { DaprPublisher, PublishError, type DaprPublisherOptions } from '../../src';
import { type OutboxMessage } from '../../src/extend';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { createTestService, type TestService } from '../support/app';

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

  async function sent(publisher: DaprPublisher): Promise<{ paths: string[]; envelopes: unknown[] }> {
    const [requestsBefore, publishesBefore] = [emu.requests.length, emu.publishes.length];
    await publisher.publish(traced('evt-1'));
    assert.deepEqual(await publisher.publishBulk([traced('evt-2'), message({ id: 'evt-3', topic: 'eu/orders #1' })]), { failed: [] });
    await publisher.close();
    const envelopes = emu.publishes.slice(publishesBefore).map((p) => ({ ...p.envelope, time: undefined }));
    return { paths: emu.requests.slice(requestsBefore).filter((r) => r.path.includes('/publish/')).map((r) => r.path), envelopes };
  }

  it('the same paths, queries and stored envelopes, single and bulk', async () => {
    const own = await sent(new DaprPublisher({ daprPort: emu.port }));
    const sdk = await sent(sdkClients.create({ daprPort: emu.port }));
    assert.equal(own.paths.length, 2);
    assert.deepEqual(own, sdk);
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
