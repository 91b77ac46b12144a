import assert from 'node:assert/strict';
import express from 'express';
import request from 'supertest';
import type { Transaction } from 'sequelize';
import { createAdminRouter } from '../../src';
import { ADMIN_TOKEN, createAdminApp, seed, type AdminFixture } from '../support/admin';
import { createTestDb, testDialects, type TestDb } from '../support/db';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const csrf = { ...auth, 'x-outbox-csrf': '1', 'content-type': 'application/json' };

for (const kind of testDialects()) {
  describe(`admin API (${kind})`, () => {
    let db: TestDb;
    let fx: AdminFixture;
    let ids: Awaited<ReturnType<typeof seed>>;

    beforeEach(async () => {
      db = await createTestDb(kind);
      fx = await createAdminApp(db.sequelize);
      ids = await seed(fx.outbox, { published: 5, pending: 2, retrying: 1, terminal: 3 });
    });
    afterEach(async () => {
      await fx.outbox.close();
      await db.close();
    });

    const get = (path: string) => request(fx.app).get(`/admin/${path}`).set(auth);
    const post = (path: string, body: unknown, headers: Record<string, string> = csrf) => request(fx.app).post(`/admin/${path}`).set(headers).send(JSON.stringify(body));

    it('GET stats: the counts by state, the backlog, the oldest pending age and the inbox size', async () => {
      const res = await get('stats').expect(200);
      assert.equal(res.body.published, 5);
      assert.equal(res.body.notPublished, 2);
      assert.equal(res.body.publishedFailed, 1);
      assert.equal(res.body.terminalFailed, 3);
      assert.equal(res.body.backlog, 3);
      assert.equal(typeof res.body.oldestPendingAgeMs, 'number');
      assert.equal(res.body.inboxSize, 0);
      assert.equal(res.body.readOnly, false);
    });

    it('GET events: newest first, paged by keyset to the end without a repeat or a gap', async () => {
      const all: string[] = [];
      let after: string | null = null;
      let pages = 0;
      do {
        const res: request.Response = await get(`events?limit=4${after ? `&after=${after}` : ''}`).expect(200);
        all.push(...res.body.events.map((e: { id: string }) => e.id));
        after = res.body.next;
        pages++;
      } while (after !== null && pages < 10);
      const expected = [...ids.published, ...ids.pending, ...ids.retrying, ...ids.terminal].reverse();
      assert.deepEqual(all, expected);
      assert.equal(pages, 3);
    });

    it('GET events: filters by state, terminal failures and topic', async () => {
      const failed = await get('events?state=3').expect(200);
      assert.deepEqual(failed.body.events.map((e: { id: string }) => e.id).sort(), [...ids.retrying, ...ids.terminal].sort());
      const terminal = await get('events?state=terminal').expect(200);
      assert.deepEqual(terminal.body.events.map((e: { id: string }) => e.id).sort(), [...ids.terminal].sort());
      assert.ok(terminal.body.events.every((e: { terminal: boolean; lastError: string }) => e.terminal && e.lastError.startsWith('broker refused')));
      await seed(fx.outbox, { published: 2, topic: 'Shipped', prefix: 'ship' });
      const shipped = await get('events?topic=Shipped').expect(200);
      assert.deepEqual(shipped.body.events.map((e: { topic: string }) => e.topic), ['Shipped', 'Shipped']);
      const none = await get('events?topic=Shipped&state=3').expect(200);
      assert.deepEqual(none.body.events, []);
    });

    it('GET events?q=: the event id exactly, or the content with % and _ taken literally', async () => {
      const now = Date.now();
      const row = (id: string, content: string) => ({ id, topic: 'Promo', pubsubName: 'pubsub', eventTypeName: 'Promo', content, creationTime: now });
      await fx.outbox.store.insert([row('promo-1', '{"text":"50%_off today"}'), row('promo-2', '{"text":"50xxoff today"}'), row('promo-3', "{\"text\":\"it's O'Brien\\\\\"}")], null, 'seed', now, now);
      const byId = await get(`events?q=${ids.terminal[0]}`).expect(200);
      assert.deepEqual(byId.body.events.map((e: { id: string }) => e.id), [ids.terminal[0]]);
      const literal = await get(`events?q=${encodeURIComponent('50%_off')}`).expect(200);
      assert.deepEqual(literal.body.events.map((e: { id: string }) => e.id), ['promo-1']);
      const quote = await get(`events?q=${encodeURIComponent("O'Brien\\")}`).expect(200);
      assert.deepEqual(quote.body.events.map((e: { id: string }) => e.id), ['promo-3']);
      const content = await get('events?q=of%20terminal').expect(200);
      assert.deepEqual(content.body.events.map((e: { id: string }) => e.id), [...ids.terminal].reverse());
    });

    it('a filtered page reads a bounded window of row ids, short pages carry a next, and following them finds every match', async () => {
      const store = fx.outbox.store;
      // Rows 1-11: published 1-5, pending 6-7, retrying 8, terminal 9-11. The first window is rows 8-11.
      const first = await store.page!({ state: 2, limit: 50, scanLimit: 4 });
      assert.deepEqual(first.rows, []);
      assert.equal(first.next, 8, 'a short page still points on');
      const found: string[] = [];
      let before: number | undefined;
      let requests = 0;
      do {
        const page = await store.page!({ state: 'terminal', limit: 2, scanLimit: 4, ...(before !== undefined ? { before } : {}) });
        assert.ok(page.rows.length <= 2);
        found.push(...page.rows.map((r) => r.id));
        before = page.next ?? undefined;
        requests++;
      } while (before !== undefined && requests < 20);
      assert.deepEqual(found, [...ids.terminal].reverse());
      const published: string[] = [];
      before = undefined;
      do {
        const page = await store.page!({ state: 2, q: 'order', limit: 50, scanLimit: 4, ...(before !== undefined ? { before } : {}) });
        published.push(...page.rows.map((r) => r.id));
        before = page.next ?? undefined;
      } while (before !== undefined);
      assert.deepEqual(published, [...ids.published].reverse());
    });

    it('hostile q and after values: a correct empty result or a 400 naming the field, never a SQL error', async () => {
      for (const q of ["' OR 1=1 --", "'; DROP TABLE integration_event_log; --", '%', '_', '\\', '!%', '`', '\u00e9\u{1F600}', ') OR (1=1', '$1', '?']) {
        const res = await get(`events?q=${encodeURIComponent(q)}`);
        assert.equal(res.status, 200, `q=${q}: ${JSON.stringify(res.body)}`);
        assert.deepEqual(res.body.events, [], `q=${q}`);
      }
      for (const q of ['\u0000', 'a\nb', 'x'.repeat(201)]) {
        const res = await get(`events?q=${encodeURIComponent(q)}`).expect(400);
        assert.equal(res.body.field, 'q');
      }
      for (const after of ['1 OR 1=1', '-1', '0', '1e3', '0x10', '1.5', '99999999999999999999', "1'", '']) {
        const res = await get(`events?after=${encodeURIComponent(after)}`).expect(400);
        assert.equal(res.body.field, 'after', after);
      }
      const stats = await get('stats').expect(200);
      assert.equal(stats.body.published, 5, 'the table is intact');
    });

    it('validates every query parameter with a 400 naming it', async () => {
      const cases: Array<[string, string]> = [
        ['events?limit=0', 'limit'],
        ['events?limit=201', 'limit'],
        ['events?limit=ten', 'limit'],
        ['events?state=4', 'state'],
        ['events?state=failed', 'state'],
        ['events?topic=' + 'x'.repeat(256), 'topic'],
        ['events?order=id', 'order'],
        ['events?state=1&state=2', 'state'],
        ['events/' + 'x'.repeat(65), 'id'],
        ['stats?x=1', 'x'],
        ['inbox?limit=-1', 'limit'],
        ['inbox?after=e1', 'afterConsumer'],
        ['inbox?afterConsumer=c', 'after'],
        ['inbox?consumer=a&after=e&afterConsumer=b', 'afterConsumer'],
      ];
      for (const [path, field] of cases) {
        const res = await get(path);
        assert.equal(res.status, 400, path);
        assert.equal(res.body.field, field, path);
        assert.match(res.body.message, new RegExp(`^${field.replace(/[[\]]/g, '\\$&')} `), path);
      }
    });

    it('GET events/:id: the whole row with its last error and the decoded content; 404 when unknown', async () => {
      const id = ids.terminal[0]!;
      const res = await get(`events/${id}`).expect(200);
      assert.equal(res.body.event.id, id);
      assert.equal(res.body.event.lastError, `broker refused ${id}`);
      assert.equal(res.body.event.terminal, true);
      assert.equal(res.body.event.data.id, id);
      assert.equal(typeof res.body.event.content, 'string');
      await get('events/no-such-event').expect(404);
    });

    it('a keyed event: its key and sequence in the detail; deleting its key\'s terminal failure lets the next one go', async () => {
      const now = Date.now();
      const keyed = [1, 2].map((n) => ({ id: `keyed-${n}`, topic: 'Carts', pubsubName: 'pubsub', eventTypeName: 'CartEvent', content: `{"n":${n}}`, creationTime: now, orderingKey: 'cart-1' }));
      await fx.outbox.store.insert(keyed, null, 'a-gone-process', now + 60_000, now);
      await fx.outbox.store.markFailed([{ id: 'keyed-1', error: 'refused', nextAttemptTime: null }], 'a-gone-process', now);
      let next = (await get('events/keyed-2').expect(200)).body.event;
      assert.equal(next.orderingKey, 'cart-1');
      assert.equal(next.sequence, 2);
      assert.equal(next.state, 0);
      assert.equal(next.nextAttemptTime, null, 'waits for the event before it');
      assert.equal((await post('events/delete', { ids: ['keyed-1'] }).expect(200)).body.deleted, 1);
      next = (await get('events/keyed-2').expect(200)).body.event;
      assert.notEqual(next.nextAttemptTime, null, 'due now that the one before it is gone');
    });

    it('POST events/republish: by ids (terminal failures only), and by filter ("retry all")', async () => {
      const one = await post('events/republish', { ids: [ids.terminal[0], ids.published[0], ids.retrying[0]] }).expect(200);
      assert.equal(one.body.republished, 1);
      const [row] = await fx.outbox.store.find([ids.terminal[0]!]);
      assert.equal(row?.state, 0);
      const other = await post('events/republish', { filter: { topic: 'Nothing' } }).expect(200);
      assert.equal(other.body.republished, 0);
      const rest = await post('events/republish', { filter: {} }).expect(200);
      assert.equal(rest.body.republished, 2);
      assert.equal((await get('stats')).body.terminalFailed, 0);
    });

    it('POST events/delete: terminal failures only', async () => {
      const res = await post('events/delete', { ids: [ids.terminal[0], ids.published[0], ids.retrying[0], ids.pending[0]] }).expect(200);
      assert.equal(res.body.deleted, 1);
      const left = await fx.outbox.store.find([ids.terminal[0]!, ids.published[0]!, ids.retrying[0]!, ids.pending[0]!]);
      assert.deepEqual(left.map((r) => r.id).sort(), [ids.published[0], ids.retrying[0], ids.pending[0]].sort());
      const all = await post('events/delete', { filter: { since: 0, before: Date.now() + 60_000 } }).expect(200);
      assert.equal(all.body.deleted, 2);
      const stats = (await get('stats')).body;
      assert.equal(stats.terminalFailed, 0);
      assert.equal(stats.published, 5);
    });

    it('validates mutation bodies with a 400 naming the field', async () => {
      const cases: Array<[unknown, string]> = [
        [{}, 'ids'],
        [[], 'body'],
        [{ ids: [] }, 'ids'],
        [{ ids: 'evt-1' }, 'ids'],
        [{ ids: [1] }, 'ids[0]'],
        [{ ids: ['a'], filter: {} }, 'ids'],
        [{ filter: { since: 'yesterday' } }, 'filter.since'],
        [{ filter: { since: 10, before: 5 } }, 'filter.since'],
        [{ filter: { state: 2 } }, 'filter.state'],
        [{ filter: [] }, 'filter'],
        [{ all: true }, 'all'],
      ];
      for (const [body, field] of cases) {
        const res = await post('events/republish', body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.field, field, JSON.stringify(body));
      }
      const bad = await request(fx.app).post('/admin/events/delete').set(csrf).send('{"ids": [');
      assert.equal(bad.status, 400);
      assert.equal(bad.body.field, 'body');
      assert.equal((await get('stats')).body.terminalFailed, 3, 'nothing changed');
    });

    it('mutations without the CSRF header, not JSON, or from another origin: 403', async () => {
      const refused: Array<Record<string, string>> = [
        { ...auth, 'content-type': 'application/json' },
        { ...auth, 'x-outbox-csrf': '1', 'content-type': 'text/plain' },
        { ...auth, 'x-outbox-csrf': '1', 'content-type': 'application/x-www-form-urlencoded' },
        { ...csrf, origin: 'https://evil.example' },
        { ...csrf, 'sec-fetch-site': 'cross-site' },
        { ...csrf, origin: 'null' },
      ];
      for (const headers of refused) {
        for (const path of ['events/republish', 'events/delete']) {
          const res = await post(path, { ids: [ids.terminal[0]] }, headers);
          assert.equal(res.status, 403, `${path} ${JSON.stringify(headers)}`);
        }
      }
      assert.equal((await get('stats')).body.terminalFailed, 3);
      const same = await request(fx.app).post('/admin/events/republish').set(csrf).set('sec-fetch-site', 'same-origin');
      assert.equal(same.status, 400, 'a same-origin request gets through to validation');
    });

    it('the page, its script and its style under a strict CSP; /admin redirects to /admin/', async () => {
      for (const [path, type] of [['', 'text/html'], ['dashboard.js', 'text/javascript'], ['dashboard.css', 'text/css']] as const) {
        const res = await get(path).expect(200);
        assert.match(res.headers['content-type']!, new RegExp(`^${type}`));
        assert.match(res.headers['content-security-policy']!, /default-src 'none'; script-src 'self'; style-src 'self'/);
        assert.doesNotMatch(res.headers['content-security-policy']!, /unsafe-inline|unsafe-eval/);
        assert.equal(res.headers['x-content-type-options'], 'nosniff');
      }
      const html = (await get('')).text;
      assert.doesNotMatch(html, /<script>|<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|\son[a-z]+=|https?:\/\//i, 'no inline script, style or handler, nothing from elsewhere');
      const redirect = await request(fx.app).get('/admin?x=1').set(auth).expect(308);
      assert.equal(redirect.headers.location, '/admin/?x=1');
      await get('nothing-here').expect(404);
    });

    it('GET inbox: handled ids by consumer, paged by keyset', async () => {
      const inbox = fx.outbox.inbox!;
      await db.sequelize.transaction(async (tx: Transaction) => {
        for (const [consumer, id] of [['a', 'e1'], ['a', 'e2'], ['a', 'e3'], ['b', 'e1']]) await inbox.record(consumer!, id!, tx, Date.now());
      });
      const first = await get('inbox?consumer=a&limit=2').expect(200);
      assert.deepEqual(first.body.entries.map((e: { eventId: string }) => e.eventId), ['e1', 'e2']);
      assert.deepEqual(first.body.next, { consumer: 'a', eventId: 'e2' });
      const second = await get('inbox?consumer=a&limit=2&after=e2').expect(200);
      assert.deepEqual(second.body.entries.map((e: { eventId: string }) => e.eventId), ['e3']);
      assert.equal(second.body.next, null);
      const across = await get('inbox?limit=2&after=e3&afterConsumer=a').expect(200);
      assert.deepEqual(across.body.entries.map((e: { consumer: string; eventId: string }) => `${e.consumer}/${e.eventId}`), ['b/e1']);
      const hostile = await get(`inbox?consumer=${encodeURIComponent("a' OR '1'='1")}`).expect(200);
      assert.deepEqual(hostile.body.entries, []);
    });

    it('GET subscriptions: what the subscription router serves', async () => {
      const res = await get('subscriptions').expect(200);
      assert.equal(res.body.subscriptions.length, 1);
      assert.equal(res.body.subscriptions[0].topic, 'OrderPlaced');
      assert.equal(res.body.subscriptions[0].deadLetterTopic, 'orders-dead');
    });

    it('mounted after outbox.middleware(): a mutation runs outside the request unit of work', async () => {
      const app = express();
      app.use(fx.outbox.middleware());
      app.use('/admin', createAdminRouter({ outbox: fx.outbox, authorize: () => true }));
      const res = await request(app).post('/admin/events/republish').set(csrf).send({ ids: [ids.terminal[0]] }).expect(200);
      assert.equal(res.body.republished, 1);
      const deleted = await request(app).post('/admin/events/delete').set(csrf).send({ ids: [ids.terminal[1]] }).expect(200);
      assert.equal(deleted.body.deleted, 1);
    });

    it('read-only: every mutation answers 405, reads still work, the page is told', async () => {
      const app = express();
      app.use('/admin', createAdminRouter({ outbox: fx.outbox, authorize: () => true, readOnly: true }));
      for (const path of ['events/republish', 'events/delete']) {
        const res = await request(app).post(`/admin/${path}`).set(csrf).send({ ids: [ids.terminal[0]] });
        assert.equal(res.status, 405, path);
      }
      const stats = await request(app).get('/admin/stats').expect(200);
      assert.equal(stats.body.readOnly, true);
      assert.equal(stats.body.terminalFailed, 3);
      await request(app).get('/admin/events').expect(200);
    });
  });
}

describe('admin API access (closed by default)', () => {
  let db: TestDb;
  let fx: AdminFixture;
  before(async () => {
    db = await createTestDb('sqlite');
    fx = await createAdminApp(db.sequelize);
  });
  after(async () => {
    await fx.outbox.close();
    await db.close();
  });

  const routes: Array<[string, string]> = [
    ['get', '/admin/'],
    ['get', '/admin'],
    ['get', '/admin/dashboard.js'],
    ['get', '/admin/dashboard.css'],
    ['get', '/admin/stats'],
    ['get', '/admin/events'],
    ['get', '/admin/events/x'],
    ['get', '/admin/inbox'],
    ['get', '/admin/subscriptions'],
    ['get', '/admin/nothing'],
    ['post', '/admin/events/republish'],
    ['post', '/admin/events/delete'],
    ['delete', '/admin/events/x'],
  ];

  async function expectAll(app: express.Express, status: number, headers: Record<string, string> = {}) {
    for (const [method, path] of routes) {
      const res = await (request(app) as unknown as Record<string, (p: string) => request.Test>)[method]!(path).set({ ...headers, 'x-outbox-csrf': '1', 'content-type': 'application/json' }).send('{"filter":{}}');
      assert.equal(res.status, status, `${method} ${path}`);
    }
  }

  it('without an authorize hook every route answers 401', async () => {
    const app = express();
    app.use('/admin', createAdminRouter({ outbox: fx.outbox }));
    await expectAll(app, 401, { authorization: `Bearer ${ADMIN_TOKEN}` });
  });

  it('a refusing or throwing hook answers 401 everywhere; the hook may add its own headers', async () => {
    await expectAll(fx.app, 401, { authorization: 'Bearer wrong' });
    const throwing = express();
    throwing.use('/admin', createAdminRouter({ outbox: fx.outbox, authorize: () => { throw new Error('session store down'); } }));
    await expectAll(throwing, 401);
    const basic = express();
    basic.use('/admin', createAdminRouter({ outbox: fx.outbox, authorize: (_req, res) => { res.setHeader('WWW-Authenticate', 'Basic realm="outbox"'); return false; } }));
    const res = await request(basic).get('/admin/').expect(401);
    assert.equal(res.headers['www-authenticate'], 'Basic realm="outbox"');
  });

  it('works mounted in an Express 4 app', async () => {
    const express4 = require('express4') as typeof import('express');
    const app = express4();
    app.use(express4.json());
    app.use('/admin', createAdminRouter({ outbox: fx.outbox, authorize: (req) => req.headers.authorization === `Bearer ${ADMIN_TOKEN}` }));
    await request(app).get('/admin/stats').expect(401);
    const stats = await request(app).get('/admin/stats').set(auth).expect(200);
    assert.equal(typeof stats.body.published, 'number');
    await request(app).get('/admin').set(auth).expect(308);
    await request(app).get('/admin/').set(auth).expect(200);
    const bad = await request(app).get('/admin/events?limit=x').set(auth).expect(400);
    assert.equal(bad.body.field, 'limit');
    const republish = await request(app).post('/admin/events/republish').set(csrf).send({ ids: ['none'] }).expect(200);
    assert.equal(republish.body.republished, 0);
  });

  it('refuses bad options when built', () => {
    assert.throws(() => createAdminRouter({} as never), /outbox must be an Outbox/);
    assert.throws(() => createAdminRouter({ outbox: fx.outbox, authorize: 'yes' as never }), /authorize must be a function/);
    assert.throws(() => createAdminRouter({ outbox: fx.outbox, readOnly: 'no' as never }), /readOnly must be a boolean/);
    assert.throws(() => createAdminRouter({ outbox: fx.outbox, subscriptions: {} as never }), /subscriptions must be a subscription router/);
  });
});
