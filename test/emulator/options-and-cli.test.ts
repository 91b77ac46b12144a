/**
 * Option validation (messages name the option, the value and the rule), CLI argument parsing,
 * and in-process sidecars for several app ids.
 */
import assert from 'node:assert/strict';
import { DaprEmulator, EmulatorError } from '../../src/testing';
import { parseCliArgs } from '../../src/testing/cli-args';
import { publish, request, setup, sub, TestApp } from './helpers';

describe('emulator: options', () => {
  const rejects = async (options: object, message: RegExp): Promise<void> => {
    await assert.rejects(
      DaprEmulator.start(options),
      (err: unknown) => err instanceof EmulatorError && err.code === 'INVALID_OPTION' && message.test(err.message),
    );
  };

  it('rejects invalid options with the option, the value and the rule', async () => {
    await rejects({ port: -1 }, /^port must be an integer from 0 to 65535, got -1$/);
    await rejects({ appId: '' }, /^appId must be a non-empty string, got ""$/);
    await rejects({ pubsubs: [] }, /^pubsubs must be a non-empty array of component names, got \[\]$/);
    await rejects({ pubsubs: ['a', 'a'] }, /^pubsubs must not repeat a name/);
    await rejects({ resiliency: { retries: -1, intervalMs: 0 } }, /^resiliency\.retries must be an integer >= 0, got -1$/);
    await rejects({ resiliency: { retries: 1 } }, /^resiliency\.intervalMs must be an integer >= 0, got undefined$/);
    await rejects({ apiToken: '' }, /^apiToken must be a non-empty string/);
    await rejects({ appUrl: 'localhost:3000' }, /^appUrl must be an absolute http:\/\/ URL, got "localhost:3000"$/);
    await rejects({ scopes: { publishingScopes: { a: 'x' } } }, /^scopes\.publishingScopes\.a must be an array of topic names, got "x"$/);
  });

  it('a port in use is a LISTEN_FAILED error', async () => {
    const first = await DaprEmulator.start();
    try {
      await assert.rejects(DaprEmulator.start({ port: first.port }), (err: unknown) => err instanceof EmulatorError && err.code === 'LISTEN_FAILED');
    } finally {
      await first.stop();
    }
  });

  it('appUrl attaches the app as the default app id at start', async () => {
    const app = await TestApp.start([sub('orders', '/orders')]);
    const emu = await DaprEmulator.start({ appId: 'users', appUrl: app.url });
    try {
      await publish(emu.url, 'orders', {});
      await emu.idle();
      assert.equal(app.received.length, 1);
      assert.equal(emu.deliveries[0]!.appId, 'users');
    } finally {
      await emu.stop();
      await app.close();
    }
  });
});

describe('emulator: sidecars for several app ids', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());

  it('addSidecar starts another sidecar on its own port sharing the broker; its publishes carry its source', async () => {
    ctx = await setup({ emulator: { appId: 'orders' }, subscriptions: [sub('events', '/events')], appId: 'audit' });
    const billing = await ctx.emu.addSidecar({ appId: 'billing' });
    assert.notEqual(billing.port, ctx.emu.port);
    assert.equal(String(billing), billing.url);
    assert.deepEqual(ctx.emu.sidecars.map((s) => s.appId), ['orders', 'billing']);
    await publish(ctx.emu.url, 'events', {});
    await publish(billing.url, 'events', {});
    await ctx.emu.idle();
    assert.deepEqual(ctx.app.received.map((r) => (r.json as { source: string }).source).sort(), ['billing', 'orders']);
    const meta = JSON.parse((await request(`${billing.url}/v1.0/metadata`)).text) as { id: string };
    assert.equal(meta.id, 'billing');
  });

  it('a sidecar can have its own API token; app ids of running sidecars are unique', async () => {
    ctx = await setup();
    const secured = await ctx.emu.addSidecar({ appId: 'secured', apiToken: 'tok' });
    assert.equal((await publish(secured.url, 't', {})).status, 401);
    assert.equal((await publish(secured.url, 't', {}, { headers: { 'dapr-api-token': 'tok' } })).status, 204);
    assert.equal((await publish(ctx.emu.url, 't', {})).status, 204);
    await assert.rejects(ctx.emu.addSidecar({ appId: 'secured' }), /appId must not be the app id of a running sidecar/);
  });
});

describe('emulator: admin routes (/emulator/v1)', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  afterEach(async () => ctx?.close());
  const post = (url: string, body: unknown): ReturnType<typeof request> =>
    request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('attach, list and detach apps; inject and reset faults; read and clear records', async () => {
    ctx = await setup({ emulator: { apiToken: 'tok' } });
    ctx.app.subscriptions = [sub('orders', '/orders')];
    const auth = { 'dapr-api-token': 'tok' };
    assert.equal((await post(`${ctx.emu.url}/emulator/v1/apps`, { appId: 'x', appUrl: ctx.app.url })).status, 401);
    const attached = await request(`${ctx.emu.url}/emulator/v1/apps`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ appId: 'x', appUrl: ctx.app.url }),
    });
    assert.equal(attached.status, 200);
    const listed = JSON.parse((await request(`${ctx.emu.url}/emulator/v1/apps`, { headers: auth })).text) as Array<{ appId: string }>;
    assert.deepEqual(listed.map((a) => a.appId), ['x']);

    const faults = await request(`${ctx.emu.url}/emulator/v1/faults`, { method: 'POST', headers: auth, body: '{"failNextPublishes":1}' });
    assert.equal(faults.status, 204);
    assert.equal((await publish(ctx.emu.url, 'orders', {}, { headers: auth })).status, 500);
    assert.equal((await publish(ctx.emu.url, 'orders', {}, { headers: auth })).status, 204);
    await request(`${ctx.emu.url}/emulator/v1/idle`, { method: 'POST', headers: auth });
    const records = JSON.parse((await request(`${ctx.emu.url}/emulator/v1/records`, { headers: auth })).text) as {
      publishes: Array<{ status: number; body: string; bodyBase64: string }>;
      deliveries: unknown[];
    };
    assert.deepEqual(records.publishes.map((p) => p.status), [500, 204]);
    assert.equal(Buffer.from(records.publishes[1]!.bodyBase64, 'base64').toString(), records.publishes[1]!.body);
    assert.equal(records.deliveries.length, 1);

    assert.equal((await request(`${ctx.emu.url}/emulator/v1/apps/x`, { method: 'DELETE', headers: auth })).status, 204);
    assert.equal((await request(`${ctx.emu.url}/emulator/v1/records`, { method: 'DELETE', headers: auth })).status, 204);
    assert.equal(ctx.emu.publishes.length, 0);
    const bad = await request(`${ctx.emu.url}/emulator/v1/apps`, { method: 'POST', headers: auth, body: '{"appId":"y"}' });
    assert.equal(bad.status, 400);
    assert.match((JSON.parse(bad.text) as { error: string }).error, /appUrl must be a non-empty string/);
  });

  it('recordLimit keeps only the newest records', async () => {
    ctx = await setup({ emulator: { recordLimit: 2 } });
    for (let i = 0; i < 4; i++) await publish(ctx.emu.url, 'orders', { i }, { query: `metadata.n=${i}` });
    assert.deepEqual(ctx.emu.publishes.map((p) => p.metadata.n), ['2', '3']);
    assert.equal(ctx.emu.requests.length, 2);
  });
});

describe('emulator: CLI arguments', () => {
  it('defaults: port from DAPR_HTTP_PORT, else 3500; tokens from DAPR_API_TOKEN / APP_API_TOKEN', () => {
    const none = parseCliArgs([], {});
    assert.equal(none.help, false);
    if (none.help) return;
    assert.equal(none.options.port, 3500);
    const env = parseCliArgs([], { DAPR_HTTP_PORT: '3601', DAPR_API_TOKEN: 'a', APP_API_TOKEN: 'b' });
    if (env.help) return assert.fail();
    assert.deepEqual([env.options.port, env.options.apiToken, env.options.appApiToken], [3601, 'a', 'b']);
  });

  it('flags win over the environment; repeatable --attach, --sidecar and --pubsub', () => {
    const parsed = parseCliArgs(
      [
        '--port',
        '0',
        '--app-id',
        'users',
        '--app-url',
        'http://127.0.0.1:3000',
        '--attach',
        'billing=http://127.0.0.1:3001',
        '--sidecar',
        'audit=3502,http://127.0.0.1:3002',
        '--sidecar=mail=3503',
        '--pubsub',
        'a',
        '--pubsub',
        'b',
        '--retries',
        '3',
        '--json',
      ],
      { DAPR_HTTP_PORT: '3601' },
    );
    if (parsed.help) return assert.fail();
    assert.equal(parsed.options.port, 0);
    assert.equal(parsed.options.appId, 'users');
    assert.deepEqual(parsed.options.pubsubs, ['a', 'b']);
    assert.deepEqual(parsed.options.resiliency, { retries: 3, intervalMs: 1000 });
    assert.deepEqual(parsed.attach, [
      { appId: 'users', appUrl: 'http://127.0.0.1:3000' },
      { appId: 'billing', appUrl: 'http://127.0.0.1:3001' },
    ]);
    assert.deepEqual(parsed.sidecars, [
      { appId: 'audit', port: 3502, appUrl: 'http://127.0.0.1:3002' },
      { appId: 'mail', port: 3503 },
    ]);
    assert.equal(parsed.json, true);
  });

  it('rejects unknown flags and malformed values naming the flag', () => {
    assert.throws(() => parseCliArgs(['--nope']), /argument is not a known option/);
    assert.throws(() => parseCliArgs(['--port', 'x']), /^EmulatorError: --port must be an integer >= 0, got "x"$/);
    assert.throws(() => parseCliArgs(['--attach', 'nourl']), /--attach must look like <appId>=<appUrl>/);
    assert.throws(() => parseCliArgs(['--sidecar', 'a:1']), /--sidecar must look like <appId>=<port>\[,<appUrl>\]/);
    assert.throws(() => parseCliArgs(['--app-id']), /--app-id needs a value/);
    assert.deepEqual(parseCliArgs(['--help']), { help: true });
  });
});
