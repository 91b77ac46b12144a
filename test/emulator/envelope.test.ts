/**
 * The CloudEvent envelope built from a plain publish (contract section 2), checked on the wire:
 * the bytes a subscriber receives, field set and key order included.
 */
import assert from 'node:assert/strict';
import { DaprEmulator, ZERO_TRACEPARENT } from '../../src/testing';
import { keysOf, publish, setup, sub } from './helpers';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RFC3339_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

describe('emulator: the envelope', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('golden: {"a":1} as application/json gives the contract example, byte for byte and in key order', async () => {
    ctx = await setup({ emulator: { appId: 'orders-service' }, subscriptions: [sub('orders', '/orders')] });
    const res = await publish(ctx.emu.url, 'orders', '{"a":1}');
    assert.equal(res.status, 204);
    assert.equal(res.body.length, 0);
    await ctx.emu.idle();

    const wire = ctx.app.received[0]!.body.toString('utf8');
    assert.deepEqual(keysOf(wire), [
      'data',
      'datacontenttype',
      'id',
      'pubsubname',
      'source',
      'specversion',
      'time',
      'topic',
      'traceid',
      'traceparent',
      'tracestate',
      'type',
    ]);
    const ce = JSON.parse(wire) as Record<string, string>;
    assert.match(ce.id!, UUID);
    assert.match(ce.time!, RFC3339_SECONDS);
    const expected =
      `{"data":{"a":1},"datacontenttype":"application/json","id":"${ce.id}","pubsubname":"pubsub",` +
      `"source":"orders-service","specversion":"1.0","time":"${ce.time}","topic":"orders",` +
      `"traceid":"${ZERO_TRACEPARENT}","traceparent":"${ZERO_TRACEPARENT}","tracestate":"","type":"com.dapr.event.sent"}`;
    assert.equal(wire, expected);
    // The bytes delivered are the bytes stored.
    assert.equal(ctx.emu.publishes[0]!.body.toString('utf8'), expected);
    assert.equal(ctx.emu.publishes[0]!.envelope!.id, ce.id);
  });

  it('uses the all-zero traceparent when the request has none, and the request trace context when it has one', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 't', '{}');
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await publish(ctx.emu.url, 't', '{}', { headers: { traceparent: parent, tracestate: 'congo=t61rcWkgMzE' } });
    const [first, second] = ctx.emu.publishes.map((p) => p.envelope!);
    assert.equal(first!.traceid, '00-00000000000000000000000000000000-0000000000000000-00');
    assert.equal(first!.traceparent, first!.traceid);
    assert.equal(first!.tracestate, '');
    assert.equal(second!.traceid, parent);
    assert.equal(second!.traceparent, parent);
    assert.equal(second!.tracestate, 'congo=t61rcWkgMzE');
  });

  it('gives every publish a new id, and `source` is the publishing sidecar app id', async () => {
    ctx = await setup({ emulator: { appId: 'users' } });
    await publish(ctx.emu.url, 't', '{}');
    await publish(ctx.emu.url, 't', '{}');
    const [a, b] = ctx.emu.publishes.map((p) => p.envelope!);
    assert.notEqual(a!.id, b!.id);
    assert.equal(a!.source, 'users');
  });

  it('keeps JSON numbers as written and escapes like Go (HTML characters, U+2028)', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 't', '{"big":12345678901234567890,"f":1.50,"e":1E3,"s":"<a&b>\u2028"}');
    const wire = ctx.emu.publishes[0]!.body.toString('utf8');
    assert.ok(wire.startsWith('{"data":{"big":12345678901234567890,"e":1E3,"f":1.50,"s":"\\u003ca\\u0026b\\u003e\\u2028"},'));
  });

  it('data: application/json with parameters is parsed; invalid JSON falls back to a string', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 't', '{"a":[1,2]}', { contentType: 'application/json; charset=utf-8' });
    await publish(ctx.emu.url, 't', 'not json', { contentType: 'application/json' });
    const [parsed, fallback] = ctx.emu.publishes.map((p) => p.envelope!);
    assert.deepEqual(parsed!.data, { a: [1, 2] });
    assert.equal(parsed!.datacontenttype, 'application/json; charset=utf-8');
    assert.equal(fallback!.data, 'not json');
  });

  it('data: application/octet-stream becomes data_base64; other types a string; no header is text/plain', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 't', Buffer.from([0, 1, 2, 255]), { contentType: 'application/octet-stream' });
    await publish(ctx.emu.url, 't', '<x>1</x>', { contentType: 'application/xml' });
    await publish(ctx.emu.url, 't', 'hello', { contentType: null });
    const [bin, xml, none] = ctx.emu.publishes.map((p) => p.envelope!);
    assert.equal(bin!.data_base64, 'AAEC/w==');
    assert.equal('data' in bin!, false);
    assert.equal(xml!.data, '<x>1</x>');
    assert.equal(none!.data, 'hello');
    assert.equal(none!.datacontenttype, 'text/plain');
  });

  it('metadata.ttlInSeconds adds `expiration` (RFC3339 UTC); an invalid TTL is ignored', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 't', '{}', { query: 'metadata.ttlInSeconds=60' });
    await publish(ctx.emu.url, 't', '{}', { query: 'metadata.ttlInSeconds=abc' });
    const [withTtl, invalid] = ctx.emu.publishes.map((p) => p.envelope!);
    assert.match(withTtl!.expiration as string, RFC3339_SECONDS);
    const delta = Date.parse(withTtl!.expiration as string) - Date.parse(withTtl!.time as string);
    assert.equal(delta, 60_000);
    assert.equal('expiration' in invalid!, false);
  });

  it('metadata.cloudevent.* overrides id, source, type, subject and trace fields (keys case-insensitive)', async () => {
    ctx = await setup();
    const q = [
      'metadata.cloudevent.id=evt-1',
      'metadata.CloudEvent.Source=custom-source',
      'metadata.cloudevent.type=user.registered',
      'metadata.cloudevent.subject=user%2F42',
      'metadata.cloudevent.traceparent=00-11111111111111111111111111111111-2222222222222222-01',
      'metadata.cloudevent.tracestate=k%3Dv',
      'metadata.cloudevent.topic=ignored',
    ].join('&');
    await publish(ctx.emu.url, 'orders', '{}', { query: q });
    const ce = ctx.emu.publishes[0]!.envelope!;
    assert.equal(ce.id, 'evt-1');
    assert.equal(ce.source, 'custom-source');
    assert.equal(ce.type, 'user.registered');
    assert.equal(ce.subject, 'user/42');
    assert.equal(ce.traceid, '00-11111111111111111111111111111111-2222222222222222-01');
    assert.equal(ce.traceparent, ce.traceid);
    assert.equal(ce.tracestate, 'k=v');
    assert.equal(ce.topic, 'orders');
    assert.equal('subject' in ctx.emu.publishes[0]!.envelope!, true);
  });

  it('an empty override falls back to the default: source "Dapr", a new id, the default type', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 't', '{}', { query: 'metadata.cloudevent.source=&metadata.cloudevent.id=&metadata.cloudevent.type=' });
    const ce = ctx.emu.publishes[0]!.envelope!;
    assert.equal(ce.source, 'Dapr');
    assert.match(ce.id as string, UUID);
    assert.equal(ce.type, 'com.dapr.event.sent');
  });

  it('application/cloudevents+json: the event is kept; topic/pubsubname overwritten; time, trace, source, type, specversion completed; overrides ignored', async () => {
    ctx = await setup({ emulator: { appId: 'pub' } });
    const own = { id: 'own-1', type: 'my.type', data: { x: 1 }, topic: 'wrong', pubsubname: 'wrong' };
    await publish(ctx.emu.url, 'orders', own, {
      contentType: 'application/cloudevents+json',
      query: 'metadata.cloudevent.id=ignored&metadata.cloudevent.source=ignored',
    });
    const ce = ctx.emu.publishes[0]!.envelope!;
    assert.equal(ce.id, 'own-1');
    assert.equal(ce.type, 'my.type');
    assert.equal(ce.topic, 'orders');
    assert.equal(ce.pubsubname, 'pubsub');
    assert.equal(ce.source, 'Dapr');
    assert.equal(ce.specversion, '1.0');
    assert.match(ce.time as string, RFC3339_SECONDS);
    assert.equal(ce.traceid, ZERO_TRACEPARENT);
    assert.equal('datacontenttype' in ce, false);

    const withTrace = { id: 'own-2', traceid: 'mine', time: '2020-01-01T00:00:00Z' };
    await publish(ctx.emu.url, 'orders', withTrace, { contentType: 'application/cloudevents+json' });
    const kept = ctx.emu.publishes[1]!.envelope!;
    assert.equal(kept.traceid, 'mine');
    assert.equal('traceparent' in kept, false);
    assert.equal(kept.time, '2020-01-01T00:00:00Z');
  });

  it('without an id, a cloudevents+json publish gets none generated', async () => {
    const emu = await DaprEmulator.start();
    try {
      await publish(emu.url, 't', { data: 1 }, { contentType: 'application/cloudevents+json' });
      assert.equal('id' in emu.publishes[0]!.envelope!, false);
    } finally {
      await emu.stop();
    }
  });
});
