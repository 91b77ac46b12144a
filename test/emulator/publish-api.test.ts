/**
 * Contract section 1: the publish API, its error table, metadata parsing, auth, health and
 * metadata routes.
 */
import assert from 'node:assert/strict';
import { DaprEmulator } from '../../src/testing';
import { publish, request } from './helpers';

describe('emulator: publish API', () => {
  let emu: DaprEmulator;
  afterEach(async () => emu?.stop());

  it('answers 204 with an empty body, for POST and PUT', async () => {
    emu = await DaprEmulator.start({ appId: 'users' });
    const post = await publish(emu.url, 'orders', { a: 1 });
    assert.equal(post.status, 204);
    assert.equal(post.body.length, 0);
    const put = await request(`${emu.url}/v1.0/publish/pubsub/orders`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(put.status, 204);
    assert.deepEqual(
      emu.publishes.map((p) => [p.status, p.accepted, p.bulk, p.appId]),
      [
        [204, true, false, 'users'],
        [204, true, false, 'users'],
      ],
    );
  });

  it('accepts topics that contain "/"', async () => {
    emu = await DaprEmulator.start();
    const res = await publish(emu.url, 'orders/eu/created', {});
    assert.equal(res.status, 204);
    assert.equal(emu.publishes[0]!.topic, 'orders/eu/created');
    assert.equal(emu.publishes[0]!.envelope!.topic, 'orders/eu/created');
  });

  it('passes metadata.<k> query parameters through as metadata (first value wins)', async () => {
    emu = await DaprEmulator.start();
    await publish(emu.url, 't', {}, { query: 'metadata.partitionKey=p1&metadata.partitionKey=p2&other=x' });
    assert.deepEqual(emu.publishes[0]!.metadata, { partitionKey: 'p1' });
  });

  describe('metadata.rawPayload (Go strconv.ParseBool)', () => {
    for (const value of ['1', 't', 'T', 'TRUE', 'true', 'True']) {
      it(`"${value}" publishes the body as is, without an envelope`, async () => {
        emu = await DaprEmulator.start();
        const res = await publish(emu.url, 't', 'raw bytes', { contentType: 'text/plain', query: `metadata.rawPayload=${value}` });
        assert.equal(res.status, 204);
        assert.equal(emu.publishes[0]!.body.toString(), 'raw bytes');
        assert.equal(emu.publishes[0]!.envelope, undefined);
      });
    }
    for (const value of ['0', 'f', 'F', 'FALSE', 'false', 'False', '']) {
      it(`"${value}" wraps the body in an envelope`, async () => {
        emu = await DaprEmulator.start();
        const res = await publish(emu.url, 't', '{}', { query: `metadata.rawPayload=${value}` });
        assert.equal(res.status, 204);
        assert.equal(emu.publishes[0]!.envelope!.specversion, '1.0');
      });
    }
  });

  describe('errors (contract table)', () => {
    it('unknown pubsub: 404 ERR_PUBSUB_NOT_FOUND "pubsub X is not found"', async () => {
      emu = await DaprEmulator.start();
      const res = await publish(emu.url, 'orders', {}, { pubsub: 'nope' });
      assert.equal(res.status, 404);
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(
        res.text,
        '{"errorCode":"ERR_PUBSUB_NOT_FOUND","message":"pubsub nope is not found","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io","metadata":{},"reason":"DAPR_PUBSUB_NOT_FOUND"}]}',
      );
      assert.equal(emu.publishes[0]!.status, 404);
      assert.equal(emu.publishes[0]!.accepted, false);
    });

    it('other pubsub names are configurable: only the listed ones exist', async () => {
      emu = await DaprEmulator.start({ pubsubs: ['events', 'audit'] });
      assert.equal((await publish(emu.url, 't', {}, { pubsub: 'audit' })).status, 204);
      assert.equal((await publish(emu.url, 't', {}, { pubsub: 'pubsub' })).status, 404);
    });

    it('empty pubsub name: 404 ERR_PUBSUB_EMPTY', async () => {
      emu = await DaprEmulator.start();
      const res = await request(`${emu.url}/v1.0/publish//orders`, { method: 'POST', body: '{}' });
      assert.equal(res.status, 404);
      const body = JSON.parse(res.text) as { errorCode: string; message: string };
      assert.equal(body.errorCode, 'ERR_PUBSUB_EMPTY');
      assert.equal(body.message, 'pubsub name is empty');
    });

    it('empty topic: 404 ERR_TOPIC_NAME_EMPTY', async () => {
      emu = await DaprEmulator.start();
      for (const path of ['/v1.0/publish/pubsub/', '/v1.0/publish/pubsub']) {
        const res = await request(`${emu.url}${path}`, { method: 'POST', body: '{}' });
        assert.equal(res.status, 404, path);
        const body = JSON.parse(res.text) as { errorCode: string; message: string };
        assert.equal(body.errorCode, 'ERR_TOPIC_NAME_EMPTY');
        assert.equal(body.message, 'topic is empty in pubsub pubsub');
      }
    });

    it('bad metadata: 400 ERR_PUBSUB_REQUEST_METADATA with the exact message', async () => {
      emu = await DaprEmulator.start();
      const res = await publish(emu.url, 't', {}, { query: 'metadata.rawPayload=x' });
      assert.equal(res.status, 400);
      const body = JSON.parse(res.text) as { errorCode: string; message: string };
      assert.equal(body.errorCode, 'ERR_PUBSUB_REQUEST_METADATA');
      assert.equal(body.message, "failed deserializing metadata. Error: rawPayload value must be a valid boolean: actual is 'x'");
      for (const bad of ['yes', 'TrUe', '2']) {
        assert.equal((await publish(emu.url, 't', {}, { query: `metadata.rawPayload=${bad}` })).status, 400, bad);
      }
    });

    it('invalid JSON sent as cloudevents+json: 500 ERR_PUBSUB_CLOUD_EVENTS_SER "cannot create cloudevent"', async () => {
      emu = await DaprEmulator.start();
      for (const body of ['{not json', '[1,2]', '"a string"']) {
        const res = await publish(emu.url, 't', body, { contentType: 'application/cloudevents+json' });
        assert.equal(res.status, 500, body);
        const parsed = JSON.parse(res.text) as { errorCode: string; message: string };
        assert.equal(parsed.errorCode, 'ERR_PUBSUB_CLOUD_EVENTS_SER');
        assert.equal(parsed.message, 'cannot create cloudevent');
      }
    });

    it('topic not allowed by scopes: 403 ERR_PUBSUB_FORBIDDEN "topic T is not allowed for app id A"', async () => {
      emu = await DaprEmulator.start({ appId: 'users', scopes: { publishingScopes: { users: ['allowed'] } } });
      assert.equal((await publish(emu.url, 'allowed', {})).status, 204);
      const res = await publish(emu.url, 'secret', {});
      assert.equal(res.status, 403);
      const body = JSON.parse(res.text) as { errorCode: string; message: string };
      assert.equal(body.errorCode, 'ERR_PUBSUB_FORBIDDEN');
      assert.equal(body.message, 'topic secret is not allowed for app id users');
    });

    it('allowedTopics forbids every other topic', async () => {
      emu = await DaprEmulator.start({ scopes: { allowedTopics: ['a'] } });
      assert.equal((await publish(emu.url, 'a', {})).status, 204);
      assert.equal((await publish(emu.url, 'b', {})).status, 403);
    });

    it('broker failure: 500 ERR_PUBSUB_PUBLISH_MESSAGE "error when publishing to topic T in pubsub P: <err>"', async () => {
      emu = await DaprEmulator.start();
      emu.faults.failNextPublishes(1, { error: 'connection refused' });
      const res = await publish(emu.url, 'orders', {});
      assert.equal(res.status, 500);
      const body = JSON.parse(res.text) as { errorCode: string; message: string };
      assert.equal(body.errorCode, 'ERR_PUBSUB_PUBLISH_MESSAGE');
      assert.equal(body.message, 'error when publishing to topic orders in pubsub pubsub: connection refused');
      assert.equal(emu.publishes[0]!.accepted, false);
      assert.equal((await publish(emu.url, 'orders', {})).status, 204);
    });

    it('a body over 4 MiB (dapr-http-max-request-size): 413 text/plain, single and bulk; 4 MiB itself is accepted', async () => {
      emu = await DaprEmulator.start();
      const limit = 4 * 1024 * 1024;
      const exactly = `"${'x'.repeat(limit - 2)}"`;
      assert.equal((await publish(emu.url, 'orders', exactly)).status, 204);
      const over = await publish(emu.url, 'orders', `"${'x'.repeat(limit - 1)}"`);
      assert.equal(over.status, 413);
      assert.equal(over.text, 'http: request body too large\n');
      const entry = (entryId: string) => ({ entryId, event: 'y'.repeat(2.5 * 1024 * 1024), contentType: 'text/plain' });
      const bulk = await request(`${emu.url}/v1.0-alpha1/publish/bulk/pubsub/orders`, { method: 'POST', body: JSON.stringify([entry('a'), entry('b')]) });
      assert.equal(bulk.status, 413);
      assert.deepEqual(emu.publishes.map((p) => p.status), [204], 'nothing of a refused body is published');
    });
  });

  describe('auth: dapr-api-token', () => {
    it('without or with a wrong token: 401 text/plain "invalid api token"', async () => {
      emu = await DaprEmulator.start({ apiToken: 's3cret' });
      for (const headers of [{}, { 'dapr-api-token': 'wrong' }] as Array<Record<string, string>>) {
        const res = await publish(emu.url, 't', {}, { headers });
        assert.equal(res.status, 401);
        assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
        assert.equal(res.text, 'invalid api token\n');
      }
      const meta = await request(`${emu.url}/v1.0/metadata`);
      assert.equal(meta.status, 401);
      assert.equal(emu.publishes.length, 0);
    });

    it('with the token: accepted', async () => {
      emu = await DaprEmulator.start({ apiToken: 's3cret' });
      const res = await publish(emu.url, 't', {}, { headers: { 'dapr-api-token': 's3cret' } });
      assert.equal(res.status, 204);
      const meta = await request(`${emu.url}/v1.0/metadata`, { headers: { 'dapr-api-token': 's3cret' } });
      assert.equal(meta.status, 200);
    });

    it('health routes are exempt', async () => {
      emu = await DaprEmulator.start({ apiToken: 's3cret' });
      assert.equal((await request(`${emu.url}/v1.0/healthz`)).status, 204);
      assert.equal((await request(`${emu.url}/v1.0/healthz/outbound`)).status, 204);
    });
  });

  describe('health and metadata', () => {
    it('GET /v1.0/healthz: 204 when ready, 500 ERR_HEALTH_NOT_READY when not', async () => {
      emu = await DaprEmulator.start();
      const ok = await request(`${emu.url}/v1.0/healthz`);
      assert.equal(ok.status, 204);
      assert.equal(ok.body.length, 0);
      emu.faults.setHealth({ ready: false });
      const notReady = await request(`${emu.url}/v1.0/healthz`);
      assert.equal(notReady.status, 500);
      assert.equal((JSON.parse(notReady.text) as { errorCode: string }).errorCode, 'ERR_HEALTH_NOT_READY');
      emu.faults.reset();
      assert.equal((await request(`${emu.url}/v1.0/healthz`)).status, 204);
    });

    it('GET /v1.0/healthz/outbound: 204 once components are ready, 500 when not', async () => {
      emu = await DaprEmulator.start();
      assert.equal((await request(`${emu.url}/v1.0/healthz/outbound`)).status, 204);
      emu.faults.setHealth({ outboundReady: false });
      const res = await request(`${emu.url}/v1.0/healthz/outbound`);
      assert.equal(res.status, 500);
      assert.equal((JSON.parse(res.text) as { errorCode: string }).errorCode, 'ERR_OUTBOUND_HEALTH_NOT_READY');
    });

    it('GET /v1.0/metadata: 200 with a non-empty body naming the app, the runtime, the components', async () => {
      emu = await DaprEmulator.start({ appId: 'users', pubsubs: ['pubsub', 'audit'] });
      const res = await request(`${emu.url}/v1.0/metadata`);
      assert.equal(res.status, 200);
      assert.ok(res.body.length > 0);
      const body = JSON.parse(res.text) as Record<string, unknown>;
      assert.equal(body.id, 'users');
      assert.equal(body.runtimeVersion, '1.18.0');
      assert.deepEqual(
        (body.components as Array<Record<string, unknown>>).map(({ name, type, version }) => ({ name, type, version })),
        [
          { name: 'pubsub', type: 'pubsub.in-memory', version: 'v1' },
          { name: 'audit', type: 'pubsub.in-memory', version: 'v1' },
        ],
      );
      assert.deepEqual(body.subscriptions, []);
    });

    it('unknown routes answer 404 like daprd\'s router', async () => {
      emu = await DaprEmulator.start();
      const res = await request(`${emu.url}/v1.0/state/store`);
      assert.equal(res.status, 404);
      assert.equal(res.text, '404 page not found\n');
    });
  });
});
