import assert from 'node:assert/strict';
import request from 'supertest';
import { currentUnitOfWork, EventState } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { createTestService, type TestService } from '../support/app';
import { readRows } from '../support/rows';
import { createDeferredForeignKey, ORPHAN_INSERT } from '../support/failing-commit';

for (const kind of testDialects()) {
  describe(`unit of work middleware (${kind})`, () => {
    let db: TestDb;
    let svc: TestService;

    beforeEach(async () => {
      db = await createTestDb(kind);
      svc = await createTestService(db.sequelize);
    });
    afterEach(async () => {
      await svc.outbox.close();
      await db.close();
    });

    it('commits the row and the event together, then publishes and marks it Published', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'alice', mobile: '1' });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 1);
      assert.equal(svc.publisher.messages.length, 1);
      const [row] = await readRows(svc.outbox, svc.publisher.ids());
      assert.equal(row?.state, EventState.Published);
      assert.equal(row?.topic, 'UserRegistered');
      assert.equal(JSON.parse(row!.content).account, 'alice');
    });

    it('rolls back on a thrown error: no user, no row, no publish', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'bob', mobile: '1', fail: 'throw' });
      assert.equal(res.status, 500);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 0);
      assert.deepEqual(await svc.outbox.stats(), { notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 0 });
      assert.equal(svc.publisher.messages.length, 0);
    });

    it('rolls back on next(err)', async () => {
      const res = await request(svc.app).post('/users/next-error').send({ account: 'carol' });
      assert.equal(res.status, 500);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 0);
      assert.equal(svc.publisher.messages.length, 0);
    });

    it('rolls back on a 5xx response', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'dave', mobile: '1', status: 503 });
      assert.equal(res.status, 503);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 0);
      assert.equal(svc.publisher.messages.length, 0);
    });

    it('commits on a 4xx response below rollbackOnStatus', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'erin', mobile: '1', status: 409 });
      assert.equal(res.status, 409);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 1);
      assert.equal(svc.publisher.messages.length, 1);
    });

    it('writes several events of one request and publishes them all', async () => {
      const res = await request(svc.app).post('/users').send({ account: 'frank', mobile: '1', events: 5 });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      assert.equal(svc.publisher.messages.length, 5);
      const stats = await svc.outbox.stats();
      assert.equal(stats.published, 5);
    });

    it('gives 50 parallel requests exactly 50 rows, all Published', async () => {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => request(svc.app).post('/users').send({ account: `user${i}`, mobile: String(i) })),
      );
      assert.ok(results.every((r) => r.status === 201));
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 50);
      assert.deepEqual(await svc.outbox.stats(), { notPublished: 0, inProgress: 0, published: 50, publishedFailed: 0, terminalFailed: 0 });
      assert.equal(new Set(svc.publisher.ids()).size, 50);
    });

    it('leaves the row for the retry processor when publishing fails, and the response is unaffected', async () => {
      svc.publisher.down = true;
      const failed: string[] = [];
      svc.outbox.on('failed', (e) => failed.push(e.id));
      const res = await request(svc.app).post('/users').send({ account: 'gina', mobile: '1' });
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      const stats = await svc.outbox.stats();
      assert.equal(stats.published, 0);
      assert.equal(stats.notPublished + stats.inProgress + stats.publishedFailed, 1);
      assert.equal(failed.length, 1, 'the failed publish waits in the local queue');
      svc.publisher.down = false;
      assert.equal(await svc.outbox.runPass('retry-by-local-queue'), 1);
      assert.equal(svc.publisher.messages.length, 1);
    });

    it('answers 5xx, not the handler\'s success, when the commit fails, and keeps nothing', async () => {
      if (kind === 'sqlite') {
        await createDeferredForeignKey(db.sequelize);
      }
      svc.app.post('/doomed', async (req, res) => {
        await svc.User.create({ account: 'doomed', mobile: '1' });
        await svc.outbox.bus.publish(new (require('../support/app').UserRegistered)('doomed', '1'));
        if (kind === 'sqlite') {
          await db.sequelize.query(ORPHAN_INSERT);
        } else {
          // Another session kills this request's connection: the unit of work cannot complete.
          const pg = kind === 'postgres';
          const [[row]] = (await db.sequelize.query(pg ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id')) as [[{ id: number }], unknown];
          const killer = db.another();
          await killer.query(pg ? `SELECT pg_terminate_backend(${Number(row.id)})` : `KILL ${row.id}`, { transaction: null });
        }
        res.status(201).json({ ok: true });
      });
      const res = await request(svc.app).post('/doomed').send({});
      assert.equal(res.status, 500);
      assert.equal(res.body.error, 'UnitOfWorkError', JSON.stringify(res.body) + res.text);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 0);
      assert.equal(svc.publisher.messages.length, 0);
      const stats = await svc.outbox.stats();
      assert.equal(stats.notPublished + stats.inProgress + stats.published, 0);
    });

    it('does not open a unit of work for GET', async () => {
      svc.app.get('/probe', (_req, res) => res.json({ inUnitOfWork: Boolean(currentUnitOfWork()) }));
      const res = await request(svc.app).get('/probe');
      assert.deepEqual(res.body, { inUnitOfWork: false });
    });
  });
}
