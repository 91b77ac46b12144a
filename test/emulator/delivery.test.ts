/**
 * Contract section 3, delivery: the request the app receives, and how the sidecar reads every
 * kind of answer (one test per row of "How the sidecar reads the app's answer").
 */
import assert from 'node:assert/strict';
import { AppReply, publish, setup, sub, TestApp } from './helpers';

describe('emulator: delivery', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('POSTs the stored envelope bytes to the route with the contract headers', async () => {
    ctx = await setup({ emulator: { appApiToken: 'app-secret' }, subscriptions: [sub('orders', '/orders')] });
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await publish(ctx.emu.url, 'orders', '{"a":1}', { headers: { traceparent: parent, tracestate: 'k=v' } });
    await ctx.emu.idle();
    const got = ctx.app.received[0]!;
    assert.equal(got.method, 'POST');
    assert.equal(got.path, '/orders');
    assert.equal(got.headers['content-type'], 'application/cloudevents+json');
    assert.equal(got.headers.traceparent, parent);
    assert.equal(got.headers.tracestate, 'k=v');
    assert.equal(got.headers.pubsubname, 'pubsub');
    assert.equal(got.headers['dapr-api-token'], 'app-secret');
    assert.deepEqual(got.body, ctx.emu.publishes[0]!.body);
    assert.equal(ctx.app.discoveryRequests[0]!.headers['dapr-api-token'], 'app-secret');
  });

  it('sends no dapr-api-token when no app token is set, and the all-zero traceparent of the envelope', async () => {
    ctx = await setup({ subscriptions: [sub('orders', 'orders')] });
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    const got = ctx.app.received[0]!;
    assert.equal(got.path, '/orders');
    assert.equal(got.headers['dapr-api-token'], undefined);
    assert.equal(got.headers.traceparent, '00-00000000000000000000000000000000-0000000000000000-00');
    assert.equal(got.headers.tracestate, undefined);
  });

  it('records each attempt: appId, pubsub, topic, route, eventId, attempt, httpStatus, outcome', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')], appId: 'billing' });
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    const d = ctx.emu.deliveries[0]!;
    assert.equal(d.appId, 'billing');
    assert.equal(d.pubsubName, 'pubsub');
    assert.equal(d.topic, 'orders');
    assert.equal(d.route, '/orders');
    assert.equal(d.eventId, ctx.emu.publishes[0]!.envelope!.id);
    assert.equal(d.messageId, ctx.emu.publishes[0]!.messageId);
    assert.equal(d.attempt, 1);
    assert.equal(d.httpStatus, 200);
    assert.equal(d.outcome, 'SUCCESS');
    assert.ok(d.at instanceof Date);
  });

  describe('app answers (contract table)', () => {
    const rows: Array<{ name: string; reply: AppReply; outcome: 'SUCCESS' | 'RETRY' | 'DROP' }> = [
      { name: '2xx with an empty body', reply: { status: 200 }, outcome: 'SUCCESS' },
      { name: '204', reply: { status: 204 }, outcome: 'SUCCESS' },
      { name: '2xx with a non-JSON body', reply: { status: 200, body: 'ok' }, outcome: 'SUCCESS' },
      { name: '2xx without a status', reply: { status: 200, body: '{"x":1}' }, outcome: 'SUCCESS' },
      { name: '2xx with an empty status', reply: { status: 200, body: '{"status":""}' }, outcome: 'SUCCESS' },
      { name: '2xx {"status":"SUCCESS"}', reply: { status: 200, body: '{"status":"SUCCESS"}' }, outcome: 'SUCCESS' },
      { name: '2xx {"status":"RETRY"}', reply: { status: 200, body: '{"status":"RETRY"}' }, outcome: 'RETRY' },
      { name: '2xx {"status":"success"} (case-sensitive: a retry)', reply: { status: 200, body: '{"status":"success"}' }, outcome: 'RETRY' },
      { name: '2xx with an unknown status string', reply: { status: 201, body: '{"status":"DONE"}' }, outcome: 'RETRY' },
      { name: '2xx {"status":"DROP"}', reply: { status: 200, body: '{"status":"DROP"}' }, outcome: 'DROP' },
      { name: '404', reply: { status: 404 }, outcome: 'DROP' },
      { name: '500', reply: { status: 500 }, outcome: 'RETRY' },
      { name: '503', reply: { status: 503, body: '{"status":"SUCCESS"}' }, outcome: 'RETRY' },
      { name: '400', reply: { status: 400 }, outcome: 'RETRY' },
    ];
    for (const row of rows) {
      it(`${row.name} -> ${row.outcome}`, async () => {
        ctx = await setup({ subscriptions: [sub('orders', '/orders')], handler: () => row.reply });
        await publish(ctx.emu.url, 'orders', '{}');
        await ctx.emu.idle();
        assert.equal(ctx.emu.deliveries.length, 1);
        const d = ctx.emu.deliveries[0]!;
        assert.equal(d.outcome, row.outcome);
        assert.equal(d.httpStatus, row.reply.status ?? 200);
        // Without a resiliency policy a RETRY is not retried: the message is given up on and recorded.
        assert.equal(ctx.emu.dropped.length, row.outcome === 'RETRY' ? 1 : 0);
        assert.equal(ctx.emu.deadLetters.length, 0);
      });
    }

    it('a connection error -> RETRY', async () => {
      ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
      await ctx.app.close();
      await publish(ctx.emu.url, 'orders', '{}');
      await ctx.emu.idle();
      const d = ctx.emu.deliveries[0]!;
      assert.equal(d.outcome, 'RETRY');
      assert.equal(d.httpStatus, undefined);
      assert.match(d.error!, /ECONNREFUSED|socket hang up|ECONNRESET/);
      assert.equal(ctx.emu.dropped.length, 1);
    });
  });

  it('RETRY is retried under the resiliency policy, then dropped and recorded', async () => {
    ctx = await setup({
      emulator: { resiliency: { retries: 2, intervalMs: 1 } },
      subscriptions: [sub('orders', '/orders')],
      handler: () => ({ status: 500 }),
    });
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    assert.deepEqual(
      ctx.emu.deliveries.map((d) => [d.attempt, d.outcome]),
      [
        [1, 'RETRY'],
        [2, 'RETRY'],
        [3, 'RETRY'],
      ],
    );
    assert.equal(ctx.emu.dropped.length, 1);
    assert.equal(ctx.emu.dropped[0]!.eventId, ctx.emu.publishes[0]!.envelope!.id);
    assert.match(ctx.emu.dropped[0]!.reason, /retries exhausted after 3 attempt\(s\)/);
    assert.equal(ctx.app.received.length, 3);
    // Every retry carries the same event id.
    assert.equal(new Set(ctx.app.received.map((r) => (r.json as { id: string }).id)).size, 1);
  });

  it('a retry that succeeds stops retrying', async () => {
    let calls = 0;
    ctx = await setup({
      emulator: { resiliency: { retries: 5, intervalMs: 1 } },
      subscriptions: [sub('orders', '/orders')],
      handler: () => (++calls < 3 ? { status: 200, body: '{"status":"RETRY"}' } : { status: 200 }),
    });
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    assert.deepEqual(
      ctx.emu.deliveries.map((d) => d.outcome),
      ['RETRY', 'RETRY', 'SUCCESS'],
    );
    assert.equal(ctx.emu.dropped.length, 0);
  });

  it('the redelivery option hands an exhausted message back to the broker before dropping it', async () => {
    ctx = await setup({
      emulator: { resiliency: { retries: 1, intervalMs: 0 }, redelivery: { retries: 1, intervalMs: 1 } },
      subscriptions: [sub('orders', '/orders')],
      handler: () => ({ status: 500 }),
    });
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    assert.deepEqual(
      ctx.emu.deliveries.map((d) => d.attempt),
      [1, 2, 3, 4],
    );
    assert.equal(ctx.emu.dropped.length, 1);
  });

  it('delivers to every app (consumer group) subscribed to the topic, once per app', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/a')], appId: 'app-a' });
    const other = await TestApp.start([sub('orders', '/b'), sub('other', '/o')]);
    try {
      await ctx.emu.attachApp({ appId: 'app-b', appUrl: other.url });
      await publish(ctx.emu.url, 'orders', '{"n":1}');
      await publish(ctx.emu.url, 'orders', '{"n":2}');
      await ctx.emu.idle();
      assert.equal(ctx.app.received.length, 2);
      assert.equal(other.received.length, 2);
      assert.deepEqual(ctx.app.received.map((r) => r.path), ['/a', '/a']);
      assert.deepEqual(other.received.map((r) => r.path), ['/b', '/b']);
      assert.deepEqual(
        ctx.emu.deliveries.map((d) => d.appId).sort(),
        ['app-a', 'app-a', 'app-b', 'app-b'],
      );
    } finally {
      await other.close();
    }
  });

  it('an app only receives messages published after it attached; a detached app receives nothing', async () => {
    ctx = await setup();
    await publish(ctx.emu.url, 'orders', '{}');
    ctx.app.subscriptions = [sub('orders', '/orders')];
    await ctx.emu.attachApp({ appId: 'late', appUrl: ctx.app.url });
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 1);
    ctx.emu.detachApp('late');
    await publish(ctx.emu.url, 'orders', '{}');
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 1);
  });
});
