/**
 * The real @dapr/dapr DaprClient publishes through the emulator (single and bulk) and starts
 * at once: it polls GET /v1.0/metadata, which answers 200 with a body on the first call.
 */
import assert from 'node:assert/strict';
import { CommunicationProtocolEnum, DaprClient, LogLevel } from '@dapr/dapr';
import { DaprEmulator } from '../../src/testing';

const quiet = (): void => undefined;
const silent = { error: quiet, warn: quiet, info: quiet, verbose: quiet, debug: quiet };

describe('emulator: @dapr/dapr DaprClient', () => {
  let emu: DaprEmulator;
  let client: DaprClient | undefined;
  afterEach(async () => {
    await client?.stop();
    client = undefined;
    await emu.stop();
  });

  function connect(daprApiToken?: string): DaprClient {
    client = new DaprClient({
      daprHost: '127.0.0.1',
      daprPort: String(emu.port),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      // The SDK logs a failed publish at error level; the tests assert on the result instead.
      logger: { level: LogLevel.Error, service: silent },
      ...(daprApiToken ? { daprApiToken } : {}),
    });
    return client;
  }

  it('starts on the first /v1.0/metadata poll (no 500 ms polling loop, no 30 s wait)', async () => {
    emu = await DaprEmulator.start({ appId: 'sdk-app' });
    const result = await connect().pubsub.publish('pubsub', 'orders', { a: 1 });
    assert.deepEqual(result, {});
    const polls = emu.requests.filter((r) => r.path === '/v1.0/metadata');
    assert.deepEqual(polls.map((r) => r.status), [200]);
  });

  it('client.pubsub.publish: JSON, text and CloudEvent payloads, with metadata', async () => {
    emu = await DaprEmulator.start({ appId: 'sdk-app' });
    const c = connect();
    assert.deepEqual(await c.pubsub.publish('pubsub', 'orders', { a: 1 }, { metadata: { ttlInSeconds: '60' } }), {});
    assert.deepEqual(await c.pubsub.publish('pubsub', 'orders', 'hello'), {});
    assert.deepEqual(
      await c.pubsub.publish('pubsub', 'orders', { specversion: '1.0', id: 'my-id', type: 't', source: 's', data: { x: 1 } }, {
        contentType: 'application/cloudevents+json',
      }),
      {},
    );
    const [json, text, ce] = emu.publishes.map((p) => p.envelope!);
    assert.deepEqual(json!.data, { a: 1 });
    assert.equal(json!.source, 'sdk-app');
    assert.ok(typeof json!.expiration === 'string');
    assert.equal(text!.data, 'hello');
    assert.equal(text!.datacontenttype, 'text/plain');
    assert.equal(ce!.id, 'my-id');
  });

  it('client.pubsub.publish reports a failure as { error } (it does not throw)', async () => {
    emu = await DaprEmulator.start();
    emu.faults.failNextPublishes(1);
    const result = await connect().pubsub.publish('pubsub', 'orders', { a: 1 });
    assert.ok(result.error);
    assert.match(String(result.error), /ERR_PUBSUB_PUBLISH_MESSAGE/);
  });

  it('client.pubsub.publishBulk publishes every entry (the SDK sends "entryID")', async () => {
    emu = await DaprEmulator.start();
    const result = await connect().pubsub.publishBulk('pubsub', 'orders', [{ a: 1 }, { a: 2 }, 'three']);
    assert.deepEqual(result, { failedMessages: [] });
    assert.equal(emu.publishes.length, 3);
    assert.ok(emu.publishes.every((p) => p.bulk && p.accepted && p.status === 204));
    assert.deepEqual(emu.publishes.map((p) => p.envelope!.data), [{ a: 1 }, { a: 2 }, 'three']);
  });

  it('publishBulk on a partial failure: the SDK reports no failed message (js-sdk#703), the emulator records which', async () => {
    emu = await DaprEmulator.start();
    emu.faults.failNextPublishes(1);
    const result = await connect().pubsub.publishBulk('pubsub', 'orders', [{ a: 1 }, { a: 2 }]);
    assert.deepEqual(result.failedMessages, []);
    assert.deepEqual(emu.publishes.map((p) => p.accepted), [false, true]);
    assert.ok(emu.publishes.every((p) => p.status === 500));
  });

  it('works with DAPR_API_TOKEN (daprApiToken)', async () => {
    emu = await DaprEmulator.start({ apiToken: 'tok' });
    assert.deepEqual(await connect('tok').pubsub.publish('pubsub', 'orders', { a: 1 }), {});
    assert.equal(emu.publishes.length, 1);
  });
});
