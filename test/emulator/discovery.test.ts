/**
 * Contract section 3, discovery: GET /dapr/subscribe, v1 `route`, v2 `routes`, and the answers
 * that mean "no subscriptions".
 */
import assert from 'node:assert/strict';
import { DaprEmulator, EmulatorError } from '../../src/testing';
import { request, sub, TestApp } from './helpers';

describe('emulator: subscription discovery', () => {
  let emu: DaprEmulator;
  let app: TestApp | undefined;
  const warnings: string[] = [];
  beforeEach(async () => {
    warnings.length = 0;
    emu = await DaprEmulator.start({ logger: { info: () => undefined, warn: (m) => warnings.push(m) } });
  });
  afterEach(async () => {
    await emu.stop();
    await app?.close();
    app = undefined;
  });

  it('calls GET /dapr/subscribe with dapr-app-id (and dapr-api-token when APP_API_TOKEN is set)', async () => {
    app = await TestApp.start([]);
    await emu.attachApp({ appId: 'users', appUrl: app.url, appApiToken: 'tok' });
    const req = app.discoveryRequests[0]!;
    assert.equal(req.method, 'GET');
    assert.equal(req.headers['dapr-app-id'], 'users');
    assert.equal(req.headers['dapr-api-token'], 'tok');
  });

  it('v1 `route` becomes the only rule', async () => {
    app = await TestApp.start([sub('orders', '/orders', { metadata: { rawPayload: 'true' }, deadLetterTopic: 'poison' })]);
    const subs = await emu.attachApp({ appId: 'a', appUrl: app.url });
    assert.deepEqual(subs, [
      { pubsubName: 'pubsub', topic: 'orders', rules: [{ match: '', path: '/orders' }], metadata: { rawPayload: 'true' }, deadLetterTopic: 'poison' },
    ]);
  });

  it('v2 `routes`: rules in order, then `default`; `route` is ignored when `default` is set', async () => {
    app = await TestApp.start([
      {
        pubsubname: 'pubsub',
        topic: 'orders',
        route: '/ignored',
        routes: { rules: [{ match: 'event.type == "widget"', path: '/widgets' }, { match: 'event.type == "gadget"', path: '/gadgets' }], default: '/orders' },
        bulkSubscribe: { enabled: true, maxMessagesCount: 10 },
      },
    ]);
    const [s] = await emu.attachApp({ appId: 'a', appUrl: app.url });
    assert.deepEqual(s!.rules, [
      { match: 'event.type == "widget"', path: '/widgets' },
      { match: 'event.type == "gadget"', path: '/gadgets' },
      { match: '', path: '/orders' },
    ]);
    assert.deepEqual(s!.bulkSubscribe, { enabled: true, maxMessagesCount: 10, maxAwaitDurationMs: 1000 });
  });

  it('v2 rules without default fall back to `route`', async () => {
    app = await TestApp.start([{ pubsubname: 'pubsub', topic: 't', route: '/t', routes: { rules: [{ match: 'event.type == "x"', path: '/x' }] } }]);
    const [s] = await emu.attachApp({ appId: 'a', appUrl: app.url });
    assert.deepEqual(s!.rules.map((r) => r.path), ['/x', '/t']);
  });

  it('keys are matched like Go struct fields (case-insensitively)', async () => {
    app = await TestApp.start([{ pubsubName: 'pubsub', Topic: 'orders', Route: '/orders', DeadLetterTopic: 'dlq' }]);
    const [s] = await emu.attachApp({ appId: 'a', appUrl: app.url });
    assert.equal(s!.topic, 'orders');
    assert.equal(s!.deadLetterTopic, 'dlq');
  });

  for (const [name, reply] of [
    ['200 with an empty body', { status: 200, body: '' }],
    ['404', { status: 404, body: 'not found' }],
    ['500 (logged)', { status: 500, body: 'boom' }],
  ] as const) {
    it(`${name}: no subscriptions`, async () => {
      app = await TestApp.start([], undefined, reply);
      assert.deepEqual(await emu.attachApp({ appId: 'a', appUrl: app.url }), []);
      if (reply.status === 500) assert.match(warnings.join('\n'), /returned http status code 500/);
    });
  }

  it('drops an item without any route, and ignores subscriptions to unknown pubsubs', async () => {
    app = await TestApp.start([{ pubsubname: 'pubsub', topic: 'noroute' }, sub('t', '/t', { pubsubname: 'kafka' }), sub('ok', '/ok')]);
    const subs = await emu.attachApp({ appId: 'a', appUrl: app.url });
    assert.deepEqual(subs.map((s) => s.topic), ['ok']);
    assert.match(warnings.join('\n'), /topic noroute has an empty routes/);
    assert.match(warnings.join('\n'), /pubsub kafka not found/);
  });

  it('an unsupported match expression is an error naming the expression', async () => {
    for (const match of [
      'event.data.qty > 5',
      'has(foo.x)',
      'event.type.startsWith("a")',
      'size(event.data) == 1',
      'foo == 1',
      'event.type in ["a"]',
      '!(event.type == "a")',
      'event.type == "a" ==',
    ]) {
      app = await TestApp.start([{ pubsubname: 'pubsub', topic: 't', routes: { rules: [{ match, path: '/x' }], default: '/d' } }]);
      await assert.rejects(
        emu.attachApp({ appId: 'a', appUrl: app.url }),
        (err: unknown) => err instanceof EmulatorError && err.code === 'UNSUPPORTED_MATCH' && err.message.includes(JSON.stringify(match)),
        match,
      );
      await app.close();
      app = undefined;
    }
  });

  it('metadata values must be strings (a Go map[string]string): anything else fails discovery', async () => {
    app = await TestApp.start([sub('t', '/t', { metadata: { rawPayload: true } })]);
    await assert.rejects(
      emu.attachApp({ appId: 'a', appUrl: app.url }),
      (err: unknown) => err instanceof EmulatorError && err.code === 'DISCOVERY_FAILED' && /metadata\.rawPayload must be a string/.test(err.message),
    );
  });

  it('an answer that is not a JSON array fails discovery; an unreachable app too', async () => {
    app = await TestApp.start([], undefined, { status: 200, body: '{"topic":"x"}' });
    await assert.rejects(emu.attachApp({ appId: 'a', appUrl: app.url }), /error getting topics from app a/);
    const url = app.url;
    await app.close();
    app = undefined;
    await assert.rejects(
      emu.attachApp({ appId: 'a', appUrl: url }),
      (err: unknown) => err instanceof EmulatorError && err.code === 'DISCOVERY_FAILED' && /ECONNREFUSED|socket hang up|ECONNRESET/.test(err.message),
    );
  });

  it('validates its arguments', async () => {
    await assert.rejects(emu.attachApp({ appId: '', appUrl: 'http://127.0.0.1:1' }), /appId must be a non-empty string, got ""/);
    await assert.rejects(emu.attachApp({ appId: 'a', appUrl: 'ftp://x' }), /appUrl must be an absolute http:\/\/ URL, got "ftp:\/\/x"/);
  });

  it('subscription scopes: a topic the app may not subscribe to is ignored', async () => {
    await emu.stop();
    emu = await DaprEmulator.start({
      scopes: { subscriptionScopes: { a: ['allowed'] } },
      logger: { info: () => undefined, warn: (m) => warnings.push(m) },
    });
    app = await TestApp.start([sub('allowed', '/a'), sub('denied', '/d')]);
    const subs = await emu.attachApp({ appId: 'a', appUrl: app.url });
    assert.deepEqual(subs.map((s) => s.topic), ['allowed']);
  });

  it('GET /v1.0/metadata lists the app subscriptions of the sidecar with that app id', async () => {
    await emu.stop();
    emu = await DaprEmulator.start({ appId: 'users' });
    app = await TestApp.start([sub('orders', '/orders')]);
    await emu.attachApp({ appId: 'users', appUrl: app.url });
    const meta = JSON.parse((await request(`${emu.url}/v1.0/metadata`)).text) as { subscriptions: unknown[] };
    assert.deepEqual(meta.subscriptions, [
      { metadata: {}, pubsubname: 'pubsub', rules: { rules: [{ match: '', path: '/orders' }] }, topic: 'orders', type: 'PROGRAMMATIC' },
    ]);
  });
});
