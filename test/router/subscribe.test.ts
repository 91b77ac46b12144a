import assert from 'node:assert/strict';
import express from 'express';
import request from 'supertest';
import { createSubscriptionRouter, OutboxConfigError } from '../../src';
import { appWith, daprEnvelope, deliveryHeaders, recordingLogger } from './helpers';

const noop = async () => {};

describe('subscription router: GET /dapr/subscribe and routes', () => {
  it('answers [] when no topic is subscribed', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    const res = await request(appWith(router)).get('/dapr/subscribe');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^application\/json/);
    assert.equal(res.text, '[]');
  });

  it("serves exactly the contract's item for a topic with every option", async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'orders', noop, {
      route: '/orders',
      rules: [{ match: 'event.type == "widget"', path: '/widgets' }],
      metadata: { rawPayload: 'true' },
      deadLetterTopic: 'poison',
      bulk: { maxMessagesCount: 100, maxAwaitDurationMs: 1000 },
    });
    const res = await request(appWith(router)).get('/dapr/subscribe');
    assert.equal(res.status, 200);
    assert.equal(
      res.text,
      '[{"pubsubname":"pubsub","topic":"orders","route":"/orders",' +
        '"routes":{"rules":[{"match":"event.type == \\"widget\\"","path":"/widgets"}],"default":"/orders"},' +
        '"metadata":{"rawPayload":"true"},"deadLetterTopic":"poison",' +
        '"bulkSubscribe":{"enabled":true,"maxMessagesCount":100,"maxAwaitDurationMs":1000}}]',
    );
  });

  it('serves only pubsubname, topic and the derived route for a plain topic', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'RegisterUserEvent', noop);
    const res = await request(appWith(router)).get('/dapr/subscribe');
    assert.deepEqual(res.body, [{ pubsubname: 'pubsub', topic: 'RegisterUserEvent', route: '/dapr-outbox/pubsub/RegisterUserEvent' }]);
  });

  it('sends metadata values as plain strings, never JSON-stringified', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'orders', noop, { metadata: { rawPayload: true, maxConcurrency: 4, queue: 'q' } });
    router.topic('pubsub', 'raw', noop, { rawPayload: true });
    const res = await request(appWith(router)).get('/dapr/subscribe');
    assert.deepEqual(res.body[0].metadata, { rawPayload: 'true', maxConcurrency: '4', queue: 'q' });
    assert.deepEqual(res.body[1].metadata, { rawPayload: 'true' });
    assert.ok(!res.text.includes('\\"true\\"'));
  });

  it('fills bulkSubscribe with Dapr defaults for bulk: true, and numbers it was given', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'a', noop, { bulk: true });
    router.topic('pubsub', 'b', noop, { bulk: { maxMessagesCount: 7 } });
    const res = await request(appWith(router)).get('/dapr/subscribe');
    assert.deepEqual(res.body[0].bulkSubscribe, { enabled: true, maxMessagesCount: 100, maxAwaitDurationMs: 1000 });
    assert.deepEqual(res.body[1].bulkSubscribe, { enabled: true, maxMessagesCount: 7, maxAwaitDurationMs: 1000 });
  });

  it('derives collision-free default routes and mounts a handler on each', async () => {
    const seen: string[] = [];
    const router = createSubscriptionRouter({ appApiToken: null, logger: recordingLogger() });
    const pairs: Array<[string, string]> = [
      ['p', 'a/b'],
      ['p/a', 'b'],
      ['p', 'a%2Fb'],
      ['p', 'a b(1)*'],
      ['p', 'ünïcode'],
    ];
    for (const [pubsub, topic] of pairs) router.topic(pubsub, topic, async (_d, ctx) => void seen.push(`${ctx.pubsubName}|${ctx.topic}`));
    const app = appWith(router);
    const res = await request(app).get('/dapr/subscribe');
    const routes = (res.body as Array<{ route: string }>).map((s) => s.route);
    assert.equal(new Set(routes).size, pairs.length);
    assert.equal(routes[0], '/dapr-outbox/p/a%2Fb');
    assert.equal(routes[1], '/dapr-outbox/p%2Fa/b');
    for (const route of routes) {
      assert.doesNotThrow(() => new URL(`http://h${route}`));
      assert.equal(new URL(`http://h${route}`).pathname, route, 'a URL parser must keep the route as it is');
      const r = await request(app).post(route).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(r.body, { status: 'SUCCESS' }, route);
    }
    assert.deepEqual(seen, pairs.map(([p, t]) => `${p}|${t}`));
  });

  it('matches routes whatever characters the sender escaped', async () => {
    const seen: string[] = [];
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'a b(1)', async (_d, ctx) => void seen.push(ctx.topic));
    const app = appWith(router);
    for (const path of ['/dapr-outbox/pubsub/a%20b%281%29', '/dapr-outbox/pubsub/a%20b(1)', '/dapr-outbox/%70ubsub/a%20b%281%29']) {
      const r = await request(app).post(path).set(deliveryHeaders()).send(daprEnvelope());
      assert.deepEqual(r.body, { status: 'SUCCESS' }, path);
    }
    assert.equal(seen.length, 3);
  });

  it('prefixes routes with the mount path', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'orders', noop, { rules: [{ match: 'event.type == "x"' }] });
    const app = express();
    app.use('/svc', router);
    const res = await request(app).get('/svc/dapr/subscribe');
    assert.deepEqual(res.body, [
      {
        pubsubname: 'pubsub',
        topic: 'orders',
        route: '/svc/dapr-outbox/pubsub/orders',
        routes: { rules: [{ match: 'event.type == "x"', path: '/svc/dapr-outbox/pubsub/orders/rules/0' }], default: '/svc/dapr-outbox/pubsub/orders' },
      },
    ]);
    const r = await request(app).post('/svc/dapr-outbox/pubsub/orders/rules/0').set(deliveryHeaders()).send(daprEnvelope());
    assert.deepEqual(r.body, { status: 'SUCCESS' });
  });

  it('answers 404 under the route prefix for an unknown route, and leaves other paths to the app', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'orders', noop);
    const app = appWith(router);
    app.post('/other', (_req, res) => void res.status(201).send('app'));
    const unknown = await request(app).post('/dapr-outbox/pubsub/nope').set(deliveryHeaders()).send(daprEnvelope());
    assert.equal(unknown.status, 404);
    const other = await request(app).post('/other').send('x');
    assert.equal(other.status, 201);
    assert.equal(other.text, 'app');
  });

  it('answers 405 to a GET on a delivery route', async () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'orders', noop);
    const res = await request(appWith(router)).get('/dapr-outbox/pubsub/orders');
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'POST');
  });

  it('lists the items with subscriptions()', () => {
    const router = createSubscriptionRouter({ appApiToken: null });
    router.topic('pubsub', 'orders', noop, { deadLetterTopic: 'dead' });
    assert.deepEqual(router.subscriptions(), [{ pubsubname: 'pubsub', topic: 'orders', route: '/dapr-outbox/pubsub/orders', deadLetterTopic: 'dead' }]);
  });

  describe('option checks', () => {
    const cases: Array<[string, (r: ReturnType<typeof createSubscriptionRouter>) => unknown, RegExp]> = [
      ['an empty topic', (r) => r.topic('pubsub', '', noop), /^topic must be a non-empty string, got ""$/],
      ['an empty pubsub', (r) => r.topic('', 'x', noop), /^pubsubName must be a non-empty string/],
      ['a handler that is not a function', (r) => r.topic('pubsub', 'x', 'nope' as never), /^handler of topic 'x' must be a function/],
      ['the same topic twice', (r) => r.topic('pubsub', 'x', noop).topic('pubsub', 'x', noop), /^topic must be subscribed once per pubsub/],
      ['a route taken by another topic', (r) => r.topic('pubsub', 'x', noop, { route: '/same' }).topic('pubsub', 'y', noop, { route: 'same' }), /^route of topic 'y' must be unique, but it is taken by topic 'x'/],
      ['a rule path equal to its own route', (r) => r.topic('pubsub', 'x', noop, { route: '/r', rules: [{ match: 'true', path: '/r' }] }), /must be unique, but it is taken by topic 'x' itself/],
      ['the discovery route', (r) => r.topic('pubsub', 'x', noop, { route: '/dapr/subscribe' }), /taken by the discovery endpoint/],
      ['a route with a query', (r) => r.topic('pubsub', 'x', noop, { route: '/a?b=1' }), /^route of topic 'x' must be a path/],
      ['an object metadata value', (r) => r.topic('pubsub', 'x', noop, { metadata: { a: {} as never } }), /^metadata\.a must be a string, number or boolean, got \{\}$/],
      ['a bulk count of 0', (r) => r.topic('pubsub', 'x', noop, { bulk: { maxMessagesCount: 0 } }), /^bulk\.maxMessagesCount must be an integer >= 1, got 0$/],
      ['an empty dead-letter topic', (r) => r.topic('pubsub', 'x', noop, { deadLetterTopic: '' }), /^deadLetterTopic must be a non-empty topic name/],
      ['rules that are not an array', (r) => r.topic('pubsub', 'x', noop, { rules: {} as never }), /^rules of topic 'x' must be a non-empty array/],
      ['a rule without match', (r) => r.topic('pubsub', 'x', noop, { rules: [{ match: '' }] }), /^rules\[0\]\.match must be a non-empty CEL expression/],
      ['a validator of the wrong kind', (r) => r.topic('pubsub', 'x', noop, { validate: {} as never }), /^validate must be a function, or a schema/],
      ['a dot topic without a route', (r) => r.topic('pubsub', '..', noop), /^route of topic '\.\.' on 'pubsub' must be given/],
      ['a route with a dot segment', (r) => r.topic('pubsub', 'x', noop, { route: '/a/%2e%2E/b' }), /^route of topic 'x' must be a path/],
      ['a consumer too long', (r) => r.topic('pubsub', 'x', noop, { consumer: 'c'.repeat(192) }), /^consumer must be a non-empty string of at most 191 characters/],
    ];
    for (const [what, call, message] of cases) {
      it(`rejects ${what}`, () => {
        const router = createSubscriptionRouter({ appApiToken: null });
        assert.throws(() => call(router), (err: unknown) => err instanceof OutboxConfigError && message.test(err.message));
      });
    }

    it('rejects bad router options', () => {
      assert.throws(() => createSubscriptionRouter({ maxBodyBytes: 0 }), /^OutboxConfigError: maxBodyBytes must be an integer number of bytes >= 1, got 0$/);
      assert.throws(() => createSubscriptionRouter({ appApiToken: '' }), /appApiToken must be a non-empty string/);
      assert.throws(() => createSubscriptionRouter({ sequelize: {} as never }), /sequelize must be a Sequelize instance/);
      assert.throws(() => createSubscriptionRouter({ inbox: true }), /inbox needs `outbox` or `sequelize`/);
      assert.throws(() => createSubscriptionRouter({ routePrefix: '/a/' }), /routePrefix must be a path/);
      assert.throws(() => createSubscriptionRouter({ logger: { warn: 1 } as never }), /logger\.warn must be a function/);
      assert.throws(() => createSubscriptionRouter({ groupCommit: { maxDeliveries: 0 } }), /^OutboxConfigError: groupCommit\.maxDeliveries must be an integer >= 1, got 0$/);
      assert.throws(() => createSubscriptionRouter({ groupCommit: { maxTransactions: 1.5 } }), /groupCommit\.maxTransactions must be an integer >= 1, got 1\.5/);
      assert.throws(() => createSubscriptionRouter({ groupCommit: 'yes' as never }), /groupCommit must be an object/);
    });
  });
});
