import assert from 'node:assert/strict';
import request from 'supertest';
import { createSubscriptionRouter } from '../../src';
import { resolveAppApiToken, tokenChecker } from '../../src/http/router/api-token';
import { appWith, daprEnvelope, deliveryHeaders } from './helpers';

describe('subscription router: app API token', () => {
  const route = '/dapr-outbox/pubsub/orders';
  let calls = 0;
  const handler = async () => void calls++;
  let savedEnv: string | undefined;

  beforeEach(() => {
    calls = 0;
    savedEnv = process.env.APP_API_TOKEN;
    delete process.env.APP_API_TOKEN;
  });
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.APP_API_TOKEN;
    else process.env.APP_API_TOKEN = savedEnv;
  });

  function appWithToken(appApiToken?: string | null) {
    const router = createSubscriptionRouter({ appApiToken });
    router.topic('pubsub', 'orders', handler);
    const app = appWith(router);
    app.get('/health', (_req, res) => void res.send('ok'));
    return app;
  }

  describe('token on (option)', () => {
    it('answers 401 to GET /dapr/subscribe without the header', async () => {
      const res = await request(appWithToken('s3cret')).get('/dapr/subscribe');
      assert.equal(res.status, 401);
      assert.equal(res.text, 'invalid api token');
    });

    it('answers 401 to GET /dapr/subscribe with a wrong token, even of the same length', async () => {
      const app = appWithToken('s3cret');
      for (const token of ['s3creT', 'nope', '', 's3cre', 's3cret-and-more']) {
        const res = await request(app).get('/dapr/subscribe').set('dapr-api-token', token);
        assert.equal(res.status, 401, JSON.stringify(token));
      }
    });

    it('serves GET /dapr/subscribe with the right token', async () => {
      const res = await request(appWithToken('s3cret')).get('/dapr/subscribe').set('dapr-api-token', 's3cret');
      assert.equal(res.status, 200);
      assert.equal(res.body.length, 1);
    });

    it('answers 401 to a delivery without the header, and does not run the handler', async () => {
      const res = await request(appWithToken('s3cret')).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.equal(res.status, 401);
      assert.equal(calls, 0);
    });

    it('runs a delivery that carries the token', async () => {
      const res = await request(appWithToken('s3cret')).post(route).set(deliveryHeaders({ 'dapr-api-token': 's3cret' })).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'SUCCESS' });
      assert.equal(calls, 1);
    });

    it('answers 401 before 404 under the route prefix', async () => {
      const res = await request(appWithToken('s3cret')).post('/dapr-outbox/pubsub/unknown').set(deliveryHeaders()).send(daprEnvelope());
      assert.equal(res.status, 401);
    });

    it("leaves the app's other routes alone", async () => {
      const res = await request(appWithToken('s3cret')).get('/health');
      assert.equal(res.status, 200);
    });
  });

  describe('token from env APP_API_TOKEN', () => {
    it('is required when the env var is set', async () => {
      process.env.APP_API_TOKEN = 'from-env';
      const app = appWithToken();
      assert.equal((await request(app).get('/dapr/subscribe')).status, 401);
      assert.equal((await request(app).get('/dapr/subscribe').set('dapr-api-token', 'from-env')).status, 200);
      assert.equal((await request(app).post(route).set(deliveryHeaders())).status, 401);
    });

    it('is not required with appApiToken: null', async () => {
      process.env.APP_API_TOKEN = 'from-env';
      const res = await request(appWithToken(null)).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'SUCCESS' });
    });

    it('prefers the option over the env var', () => {
      assert.equal(resolveAppApiToken('opt', { APP_API_TOKEN: 'env' }), 'opt');
      assert.equal(resolveAppApiToken(undefined, { APP_API_TOKEN: 'env' }), 'env');
      assert.equal(resolveAppApiToken(undefined, { APP_API_TOKEN: '' }), undefined);
      assert.equal(resolveAppApiToken(null, { APP_API_TOKEN: 'env' }), undefined);
    });
  });

  describe('token off', () => {
    it('serves discovery and deliveries without any header', async () => {
      const app = appWithToken();
      assert.equal((await request(app).get('/dapr/subscribe')).status, 200);
      const res = await request(app).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'SUCCESS' });
    });

    it('ignores a token the sidecar sends anyway', async () => {
      const res = await request(appWithToken()).post(route).set(deliveryHeaders({ 'dapr-api-token': 'whatever' })).send(daprEnvelope());
      assert.deepEqual(res.body, { status: 'SUCCESS' });
    });
  });

  it('compares in constant time over hashes: any length, no throw', () => {
    const check = tokenChecker('abc');
    const req = (v?: string | string[]) => ({ headers: v === undefined ? {} : { 'dapr-api-token': v } }) as never;
    assert.equal(check(req('abc')), true);
    assert.equal(check(req('ab')), false);
    assert.equal(check(req('abcd')), false);
    assert.equal(check(req('x'.repeat(10000))), false);
    assert.equal(check(req()), false);
    assert.equal(check(req(['abc', 'x'])), true);
  });
});
