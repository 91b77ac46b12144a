/**
 * How the publish routes read pubsub name and topic from the request path: Go's net/http decodes
 * the target, chi routes on the raw path only when it differs from Go's own encoding, and daprd
 * QueryUnescapes every route parameter once more.
 */
import assert from 'node:assert/strict';
import { DaprEmulator } from '../../src/testing';
import { request } from './helpers';

describe('emulator: publish path decoding', () => {
  let emu: DaprEmulator;
  beforeEach(async () => {
    emu = await DaprEmulator.start({ pubsubs: ['pubsub', 'pub sub'] });
  });
  afterEach(async () => emu.stop());

  const post = (path: string, body = '{}') => request(`${emu.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });

  const decoded: Array<[string, string, string]> = [
    ['/v1.0/publish/pubsub/orders%23eu', 'pubsub', 'orders#eu'],
    ['/v1.0/publish/pubsub/orders%3Fregion%3Deu', 'pubsub', 'orders?region=eu'],
    ['/v1.0/publish/pubsub/eu%2Forders', 'pubsub', 'eu/orders'],
    ['/v1.0/publish/pubsub/eu/orders%231', 'pubsub', 'eu/orders#1'],
    ['/v1.0/publish/pub%20sub/orders', 'pub sub', 'orders'],
    ['/v1.0/publish/pubsub/caf%C3%A9', 'pubsub', 'café'],
    // The raw path is Go's own encoding: chi routes on the decoded path and daprd decodes again.
    ['/v1.0/publish/pubsub/a+b', 'pubsub', 'a b'],
    ['/v1.0/publish/pubsub/rate%2520', 'pubsub', 'rate '],
    // Any escape Go would not write keeps the raw path, decoded once.
    ['/v1.0/publish/%70ubsub/rate%20100%25', 'pubsub', 'rate 100%'],
    ['/v1.0/publish/pubsub/a%2Bb', 'pubsub', 'a+b'],
    ['/v1.0-alpha1/publish/bulk/pubsub/orders%23eu', 'pubsub', 'orders#eu'],
  ];
  for (const [path, pubsubName, topic] of decoded) {
    it(`${path} publishes to ${pubsubName} / ${JSON.stringify(topic)}`, async () => {
      const bulk = path.includes('/bulk/');
      const res = await post(path, bulk ? JSON.stringify([{ entryId: '1', event: { a: 1 }, contentType: 'application/json' }]) : '{}');
      assert.equal(res.status, 204, res.text);
      assert.equal(emu.publishes.length, 1);
      assert.equal(emu.publishes[0]!.pubsubName, pubsubName);
      assert.equal(emu.publishes[0]!.topic, topic);
      assert.equal(emu.publishes[0]!.envelope!.topic, topic);
    });
  }

  it('answers 400 when a parameter does not unescape the second time, and publishes nothing', async () => {
    const res = await post('/v1.0/publish/pubsub/rate%20100%25');
    assert.equal(res.status, 400);
    assert.equal(res.text, 'failed to unescape request parameter "*". Error: invalid URL escape "%"\n');
    assert.equal(emu.publishes.length, 0);
  });

  it('answers 400 Bad Request to a malformed escape in the request line, before any handler', async () => {
    const res = await post('/v1.0/publish/pubsub/rate%20100%');
    assert.equal(res.status, 400);
    assert.equal(res.text, '400 Bad Request');
    assert.equal(emu.publishes.length, 0);
    assert.deepEqual(emu.requests.map((r) => r.status), [400]);
  });
});
