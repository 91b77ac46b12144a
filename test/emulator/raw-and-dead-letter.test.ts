/**
 * Raw-payload subscriptions (FromRawPayload), the JS SDK's stringified-metadata trap, messages
 * that are not CloudEvents, expiration, and dead-letter topics receiving the ORIGINAL bytes.
 */
import assert from 'node:assert/strict';
import { keysOf, publish, setup, sub } from './helpers';

describe('emulator: raw payloads and dead letters', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('a rawPayload subscription receives FromRawPayload: a new CloudEvent with data_base64 of the broker bytes', async () => {
    ctx = await setup({ subscriptions: [sub('raw', '/raw', { metadata: { rawPayload: 'true' } })] });
    await publish(ctx.emu.url, 'raw', 'hello raw', { contentType: 'text/plain', query: 'metadata.rawPayload=true' });
    await ctx.emu.idle();
    const got = ctx.app.received[0]!;
    assert.equal(got.headers['content-type'], 'application/cloudevents+json');
    assert.equal(got.headers.rawpayload, 'true');
    assert.deepEqual(keysOf(got.body.toString()), ['data_base64', 'datacontenttype', 'id', 'pubsubname', 'source', 'specversion', 'topic', 'type']);
    const ce = got.json as Record<string, string>;
    assert.equal(Buffer.from(ce.data_base64!, 'base64').toString(), 'hello raw');
    assert.equal(ce.datacontenttype, 'application/octet-stream');
    assert.equal(ce.source, 'Dapr');
    assert.equal(ce.type, 'com.dapr.event.sent');
    assert.equal(ce.topic, 'raw');
    assert.equal(ce.pubsubname, 'pubsub');
    assert.equal(ctx.emu.deliveries[0]!.eventId, ce.id);
  });

  it('a rawPayload subscriber of an enveloped publish gets the envelope bytes base64-encoded', async () => {
    ctx = await setup({ subscriptions: [sub('t', '/t', { metadata: { rawPayload: 'true' } })] });
    await publish(ctx.emu.url, 't', { a: 1 });
    await ctx.emu.idle();
    const ce = ctx.app.received[0]!.json as { data_base64: string };
    assert.deepEqual(Buffer.from(ce.data_base64, 'base64'), ctx.emu.publishes[0]!.body);
  });

  it('metadata stringified by the JS SDK ("\\"true\\"") makes every message fail: dead-lettered, original bytes', async () => {
    ctx = await setup({
      subscriptions: [sub('t', '/t', { metadata: { rawPayload: '"true"' }, deadLetterTopic: 'poison' }), sub('poison', '/poison')],
    });
    await publish(ctx.emu.url, 't', { a: 1 });
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => r.path), ['/poison']);
    assert.deepEqual(ctx.app.received[0]!.body, ctx.emu.publishes[0]!.body);
    assert.match(ctx.emu.deliveries[0]!.error!, /rawPayload value must be a valid boolean: actual is '"true"'/);
    assert.equal(ctx.emu.deadLetters[0]!.deadLetterTopic, 'poison');
  });

  it('...and without a dead-letter topic, every message is given up on and recorded as dropped', async () => {
    ctx = await setup({ subscriptions: [sub('t', '/t', { metadata: { rawPayload: '"true"' } })] });
    await publish(ctx.emu.url, 't', { a: 1 });
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 0);
    assert.equal(ctx.emu.dropped.length, 1);
    assert.deepEqual(ctx.emu.dropped[0]!.body, ctx.emu.publishes[0]!.body);
  });

  it('raw bytes that are not a CloudEvent cannot reach a normal subscriber: dropped', async () => {
    ctx = await setup({ subscriptions: [sub('t', '/t')] });
    await publish(ctx.emu.url, 't', 'not json', { contentType: 'text/plain', query: 'metadata.rawPayload=true' });
    await publish(ctx.emu.url, 't', '{"plain":"object"}', { query: 'metadata.rawPayload=true' });
    await ctx.emu.idle();
    assert.equal(ctx.emu.dropped.length, 1);
    assert.match(ctx.emu.dropped[0]!.reason, /error deserializing cloud event/);
    assert.deepEqual(ctx.app.received.map((r) => r.json), [{ plain: 'object' }]);
  });

  it('dead-letter topic after RETRY with retries exhausted: receives the ORIGINAL bytes (same pubsub), acked', async () => {
    ctx = await setup({
      emulator: { resiliency: { retries: 1, intervalMs: 1 } },
      subscriptions: [sub('orders', '/orders', { deadLetterTopic: 'poison' }), sub('poison', '/poison')],
      handler: (req) => (req.path === '/orders' ? { status: 500 } : { status: 200 }),
    });
    await publish(ctx.emu.url, 'orders', '{"a":1}');
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => r.path), ['/orders', '/orders', '/poison']);
    const original = ctx.emu.publishes[0]!.body;
    assert.deepEqual(ctx.app.received[2]!.body, original);
    assert.equal((ctx.app.received[2]!.json as { topic: string }).topic, 'orders');
    assert.equal(ctx.emu.dropped.length, 0);
    const dl = ctx.emu.deadLetters[0]!;
    assert.equal(dl.topic, 'orders');
    assert.equal(dl.deadLetterTopic, 'poison');
    assert.equal(dl.eventId, ctx.emu.publishes[0]!.envelope!.id);
    assert.deepEqual(dl.body, original);
  });

  it('dead-letter topic after DROP and after 404', async () => {
    ctx = await setup({
      subscriptions: [sub('a', '/a', { deadLetterTopic: 'poison' }), sub('b', '/b', { deadLetterTopic: 'poison' }), sub('poison', '/poison')],
      handler: (req) => (req.path === '/a' ? { status: 200, body: '{"status":"DROP"}' } : req.path === '/b' ? { status: 404 } : { status: 200 }),
    });
    await publish(ctx.emu.url, 'a', '{"from":"a"}');
    await publish(ctx.emu.url, 'b', '{"from":"b"}');
    await ctx.emu.idle();
    const poison = ctx.app.received.filter((r) => r.path === '/poison').map((r) => (r.json as { data: { from: string } }).data.from);
    assert.deepEqual(poison.sort(), ['a', 'b']);
  });

  it('an expired message (ttlInSeconds) is not delivered', async () => {
    ctx = await setup({ subscriptions: [sub('t', '/t')] });
    const expired = { id: 'old', specversion: '1.0', type: 't', source: 's', expiration: '2000-01-01T00:00:00Z' };
    await publish(ctx.emu.url, 't', expired, { contentType: 'application/cloudevents+json' });
    await publish(ctx.emu.url, 't', {}, { query: 'metadata.ttlInSeconds=3600' });
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 1);
    assert.equal(ctx.emu.deliveries[0]!.outcome, 'DROP');
    assert.equal(ctx.emu.dropped[0]!.reason, 'expired');
  });
});
