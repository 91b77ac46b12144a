/**
 * Test hooks: failNextPublishes, failPublishesFor, slowBroker, closeConnections, idle() and
 * stop(). No timing thresholds: waits are released by events (reset, an app's answer).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { DaprEmulator, EmulatorError, Faults } from '../../src/testing';
import { publish, request, setup, sub, until } from './helpers';

describe('emulator: fault hooks', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('failNextPublishes(n): the next n publishes (single or bulk entries) answer 500, then publishing works', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.failNextPublishes(3);
    assert.equal((await publish(ctx.emu.url, 'orders', {})).status, 500);
    const bulk = await request(`${ctx.emu.url}/v1.0-alpha1/publish/bulk/pubsub/orders`, {
      method: 'POST',
      body: JSON.stringify(['a', 'b', 'c'].map((entryId) => ({ entryId, event: {}, contentType: 'application/json' }))),
    });
    assert.equal(bulk.status, 500);
    assert.deepEqual((JSON.parse(bulk.text) as { failedEntries: Array<{ entryId: string }> }).failedEntries.map((f) => f.entryId), ['a', 'b']);
    assert.equal((await publish(ctx.emu.url, 'orders', {})).status, 204);
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 2); // bulk entry c, then the last single publish
  });

  it('rejectNextPublishRequests(n, status): the next n publish requests answer that status before the API sees them', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.rejectNextPublishRequests(2, 429);
    const first = await publish(ctx.emu.url, 'orders', {});
    assert.equal(first.status, 429);
    assert.equal(first.text, 'Too Many Requests\n');
    const bulk = await request(`${ctx.emu.url}/v1.0-alpha1/publish/bulk/pubsub/orders`, {
      method: 'POST',
      body: JSON.stringify([{ entryId: 'a', event: {}, contentType: 'application/json' }]),
    });
    assert.equal(bulk.status, 429);
    assert.equal(ctx.emu.publishes.length, 0, 'a rejected request is not a publish');
    assert.equal((await publish(ctx.emu.url, 'orders', {})).status, 204);
  });

  it('failPublishesFor(ms): every publish fails inside the window; reset() ends it', async () => {
    ctx = await setup();
    ctx.emu.faults.failPublishesFor(600_000, { error: 'maintenance' });
    const res = await publish(ctx.emu.url, 'orders', {});
    assert.equal(res.status, 500);
    assert.match(res.text, /error when publishing to topic orders in pubsub pubsub: maintenance/);
    assert.equal((await publish(ctx.emu.url, 'orders', {})).status, 500);
    ctx.emu.faults.reset();
    assert.equal((await publish(ctx.emu.url, 'orders', {})).status, 204);
    ctx.emu.faults.failPublishesFor(0);
    assert.equal((await publish(ctx.emu.url, 'orders', {})).status, 204);
  });

  it('slowBroker(ms): a publish waits in the broker (not answered, not stored) until the delay ends', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.slowBroker(600_000);
    let answered = false;
    const pending = publish(ctx.emu.url, 'orders', {}).then((r) => {
      answered = true;
      return r;
    });
    await until(() => ctx.emu.faults.heldByBroker === 1);
    assert.equal(answered, false);
    assert.equal(ctx.emu.publishes.length, 0);
    ctx.emu.faults.reset(); // ends the delay at once
    assert.equal((await pending).status, 204);
    assert.equal(ctx.emu.publishes.length, 1);
  });

  it('slowBroker(ms): each delivery attempt waits in the broker too', async () => {
    ctx = await setup({ subscriptions: [sub('orders', '/orders')] });
    ctx.emu.faults.slowBroker(600_000);
    const publishing = publish(ctx.emu.url, 'orders', {});
    await until(() => ctx.emu.faults.heldByBroker === 1);
    // Release the held publish and slow the broker again before it resumes: its delivery waits.
    ctx.emu.faults.reset();
    ctx.emu.faults.slowBroker(600_000);
    assert.equal((await publishing).status, 204);
    await until(() => ctx.emu.faults.heldByBroker === 1);
    assert.equal(ctx.app.received.length, 0);
    assert.equal(ctx.emu.deliveries.length, 0);
    ctx.emu.faults.reset();
    await ctx.emu.idle();
    assert.equal(ctx.app.received.length, 1);
    assert.equal(ctx.emu.deliveries[0]!.outcome, 'SUCCESS');
  });

  it('closeConnections(): destroys open keep-alive sockets; the next request opens a new one', async () => {
    const emu = await DaprEmulator.start();
    const agent = new http.Agent({ keepAlive: true });
    try {
      const sockets: net.Socket[] = [];
      const get = (): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = http.get(`${emu.url}/v1.0/healthz`, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('socket', (s: net.Socket) => sockets.push(s));
          req.on('error', reject);
        });
      assert.equal(await get(), 204);
      const first = sockets[0]!;
      const closed = new Promise<void>((resolve) => first.once('close', () => resolve()));
      emu.faults.closeConnections();
      await closed;
      assert.equal(first.destroyed, true);
      assert.equal(await get(), 204);
      assert.notEqual(sockets.at(-1), first);
    } finally {
      agent.destroy();
      await emu.stop();
    }
  });

  it('idle() waits for deliveries in flight, including scheduled retries', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    ctx = await setup({
      emulator: { resiliency: { retries: 1, intervalMs: 5 } },
      subscriptions: [sub('orders', '/orders')],
      handler: async () => {
        calls++;
        if (calls === 1) return { status: 500 };
        await gate;
        return { status: 200 };
      },
    });
    await publish(ctx.emu.url, 'orders', {});
    let idle = false;
    const waiting = ctx.emu.idle().then(() => (idle = true));
    await ctx.app.waitFor(2);
    assert.equal(idle, false);
    release();
    await waiting;
    assert.deepEqual(ctx.emu.deliveries.map((d) => d.outcome), ['RETRY', 'SUCCESS']);
  });

  it('stop() cancels scheduled retries and is idempotent', async () => {
    ctx = await setup({
      emulator: { resiliency: { retries: 3, intervalMs: 600_000 } },
      subscriptions: [sub('orders', '/orders')],
      handler: () => ({ status: 500 }),
    });
    await publish(ctx.emu.url, 'orders', {});
    await ctx.app.waitFor(1);
    await until(() => ctx.emu.deliveries.length === 1);
    await Promise.all([ctx.emu.stop(), ctx.emu.stop()]);
    assert.equal(ctx.emu.deliveries.length, 1);
    await assert.rejects(ctx.emu.attachApp({ appId: 'x', appUrl: ctx.app.url }), (e: unknown) => e instanceof EmulatorError && e.code === 'NOT_RUNNING');
  });

  it('fault arguments are validated with the option, the value and the rule', () => {
    const faults = new Faults({ closeConnections: () => undefined, stopSignal: new AbortController().signal });
    assert.throws(() => faults.failNextPublishes(-1), /failNextPublishes\(n\) must be an integer >= 0, got -1/);
    assert.throws(() => faults.slowBroker(1.5), /slowBroker\(ms\) must be an integer >= 0, got 1.5/);
    assert.throws(() => faults.failPublishesFor(10, { error: '' }), /opts.error must be a non-empty string, got ""/);
    assert.throws(() => faults.rejectNextPublishRequests(1, 200), /rejectNextPublishRequests\(status\) must be an integer from 400 to 599, got 200/);
  });
});
