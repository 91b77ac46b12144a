/**
 * SQLite has one writer at a time: units of work that nest, a slow client, library calls made
 * from inside a request, and an in-memory database must never hang or mix.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import request from 'supertest';
import { Sequelize } from 'sequelize';
import { createOutbox, createSubscriptionRouter, OutboxConfigError, UnitOfWorkError } from '../../src';
import { createTestDb, type TestDb } from '../support/db';
import { createTestService, UserRegistered, type TestService } from '../support/app';
import { RecordingPublisher } from '../support/recording-publisher';
import { createDeferredForeignKey, ORPHAN_INSERT } from '../support/failing-commit';

describe('SQLite writes (one writer at a time)', () => {
  let db: TestDb;
  let svc: TestService;

  beforeEach(async () => {
    db = await createTestDb('sqlite');
    svc = await createTestService(db.sequelize, { writeLockWait: 1 });
  });
  afterEach(async () => {
    await svc.outbox.close();
    await db.close();
  });

  describe('nested units of work join the outer one', () => {
    it('runInUnitOfWork inside runInUnitOfWork commits both parts together', async () => {
      await svc.outbox.runInUnitOfWork(async () => {
        await svc.User.create({ account: 'outer', mobile: '1' });
        await svc.outbox.bus.publish(new UserRegistered('outer', '1'));
        await svc.outbox.runInUnitOfWork(async () => {
          await svc.User.create({ account: 'inner', mobile: '1' });
          await svc.outbox.bus.publish(new UserRegistered('inner', '1'));
        });
      });
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 2);
      assert.deepEqual(svc.publisher.messages.map((m) => JSON.parse(m.content).account).sort(), ['inner', 'outer']);
    });

    it('an inner unit of work that throws rolls the whole unit of work back', async () => {
      await assert.rejects(
        svc.outbox.runInUnitOfWork(async () => {
          await svc.User.create({ account: 'outer', mobile: '1' });
          await svc.outbox.runInUnitOfWork(async () => {
            await svc.outbox.bus.publish(new UserRegistered('inner', '1'));
          });
          await svc.outbox.runInUnitOfWork(async () => {
            throw new Error('inner failure');
          }).catch(() => undefined);
        }),
        (err: unknown) => err instanceof UnitOfWorkError && err.phase === 'commit' && /inner failure/.test(err.message),
      );
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 0);
      assert.equal(svc.publisher.messages.length, 0);
    });

    it('runInUnitOfWork inside a request joins the request', async () => {
      svc.app.post('/nested', async (_req, res) => {
        await svc.User.create({ account: 'req', mobile: '1' });
        await svc.outbox.runInUnitOfWork(() => svc.outbox.bus.publish(new UserRegistered('req', '1')));
        res.status(201).json({ ok: true });
      });
      const res = await request(svc.app).post('/nested').send({});
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      assert.equal(svc.publisher.messages.length, 1);
    });

    it('the middleware mounted twice gives the request one unit of work', async () => {
      const app = express();
      app.use(express.json());
      app.use(svc.outbox.middleware());
      app.use(svc.outbox.middleware());
      app.post('/twice', async (_req, res) => {
        await svc.User.create({ account: 'twice', mobile: '1' });
        await svc.outbox.bus.publish(new UserRegistered('twice', '1'));
        res.status(201).json({ ok: true });
      });
      const res = await request(app).post('/twice').send({});
      assert.equal(res.status, 201);
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 1);
      assert.equal(svc.publisher.messages.length, 1);
    });
  });

  describe('library calls from inside a request that wrote', () => {
    it('outbox.republish() fails at once with a clear error instead of waiting for the request itself', async () => {
      let error: unknown;
      svc.app.post('/republish', async (_req, res) => {
        await svc.User.create({ account: 'r', mobile: '1' });
        try {
          await svc.outbox.republish(['nothing-to-do']);
        } catch (err) {
          error = err;
        }
        res.status(200).json({ ok: true });
      });
      const res = await request(svc.app).post('/republish').send({});
      assert.equal(res.status, 200);
      assert.ok(error instanceof UnitOfWorkError, String(error));
      assert.match(error.message, /write lock that the surrounding unit of work holds/);
      assert.equal(await svc.User.count(), 1, 'the request itself still commits');
    });

    it('outbox.runPass() reports the same error and counts 0', async () => {
      let count = -1;
      const errors: Error[] = [];
      svc.outbox.on('error', (e) => errors.push(e));
      svc.app.post('/pass', async (_req, res) => {
        await svc.User.create({ account: 'p', mobile: '1' });
        count = await svc.outbox.runPass('retry-by-database');
        res.status(200).json({ ok: true });
      });
      const res = await request(svc.app).post('/pass').send({});
      assert.equal(res.status, 200);
      assert.equal(count, 0);
      assert.ok(errors.some((e) => /write lock that the surrounding unit of work holds/.test(String((e as { cause?: unknown }).cause ?? e.message))), errors.map(String).join('; '));
    });
  });

  describe('a slow client', () => {
    it('does not hold the write lock while its body trickles in: other writers go on', async function () {
      this.timeout(30_000);
      const app = express();
      app.use(svc.outbox.middleware()); // before the body parser: the request's unit of work opens at arrival
      app.use(express.json());
      app.post('/users', async (req, res) => {
        await svc.User.create({ account: req.body.account, mobile: '1' });
        await svc.outbox.bus.publish(new UserRegistered(req.body.account, '1'));
        res.status(201).json({ ok: true });
      });
      const server = http.createServer(app).listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
      const { port } = server.address() as AddressInfo;
      const body = JSON.stringify({ account: 'slow' });
      const slow = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/users', headers: { 'content-type': 'application/json', 'content-length': body.length } });
      const slowAnswer = new Promise<number>((resolve, reject) => {
        slow.once('response', (r) => resolve(r.statusCode ?? 0)).once('error', reject);
      });
      slow.write(body.slice(0, 3)); // and then nothing, for now
      try {
        await new Promise((resolve) => setTimeout(resolve, 100));
        for (let i = 0; i < 3; i++) {
          const res = await request(server).post('/users').send({ account: `fast-${i}` });
          assert.equal(res.status, 201);
        }
        slow.end(body.slice(3));
        assert.equal(await slowAnswer, 201);
        assert.equal(await svc.User.count(), 4);
      } finally {
        slow.destroy();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('a writer that waits longer than writeLockWait gets 503 with a clear error, and the holder goes on', async function () {
      this.timeout(30_000);
      let releaseHolder!: () => void;
      const holding = new Promise<void>((resolve) => (releaseHolder = resolve));
      let holderStarted!: () => void;
      const started = new Promise<void>((resolve) => (holderStarted = resolve));
      svc.app.post('/hold', async (req, res) => {
        await svc.User.create({ account: req.body.account, mobile: '1' });
        holderStarted();
        await holding;
        res.status(201).json({ ok: true });
      });
      const holder = request(svc.app).post('/hold').send({ account: 'holder' }).then((r) => r);
      await started;
      const waiter = await request(svc.app).post('/users').send({ account: 'waiter', mobile: '1' });
      assert.equal(waiter.status, 503);
      let error: unknown;
      svc.app.post('/wait', async (_req, res) => {
        try {
          await svc.User.create({ account: 'waiter', mobile: '1' });
        } catch (err) {
          error = err;
        }
        res.status(200).end();
      });
      await request(svc.app).post('/wait').send({});
      assert.ok(error instanceof UnitOfWorkError, String(error));
      assert.equal(error.status, 503);
      assert.match(error.message, /waited 1000 ms for the SQLite write lock/);
      releaseHolder();
      assert.equal((await holder).status, 201);
      assert.deepEqual((await svc.User.findAll()).map((u) => u.get('account')), ['holder']);
    });
  });

  describe('a failed COMMIT', () => {
    it('gives the write lock back: the next requests and units of work go on', async function () {
      this.timeout(30_000);
      await createDeferredForeignKey(db.sequelize);
      svc.app.post('/orphan', async (_req, res) => {
        await db.sequelize.query(ORPHAN_INSERT);
        res.status(201).json({ ok: true });
      });
      assert.equal((await request(svc.app).post('/orphan').send({})).status, 500);
      for (let i = 0; i < 2; i++) assert.equal((await request(svc.app).post('/users').send({ account: `after-${i}`, mobile: '1' })).status, 201);
      await svc.outbox.runInUnitOfWork(() => svc.User.create({ account: 'job', mobile: '1' }));
      await svc.outbox.drain();
      assert.equal(await svc.User.count(), 3);
      assert.equal(svc.publisher.messages.length, 2);
    });
  });

  describe('an in-memory database', () => {
    it('is refused with a clear error by createOutbox and by the router', async () => {
      const memory = new Sequelize({ dialect: 'sqlite', storage: ':memory:', logging: false });
      try {
        assert.throws(
          () => createOutbox({ sequelize: memory, publisher: new RecordingPublisher() }),
          (err: unknown) => err instanceof OutboxConfigError && err.option === 'sequelize' && /in-memory SQLite/.test(err.message) && /sqlite:\.\/data\/app\.db/.test(err.message),
        );
        assert.throws(() => createSubscriptionRouter({ sequelize: memory }), (err: unknown) => err instanceof OutboxConfigError && /in-memory SQLite/.test(err.message));
      } finally {
        await memory.close();
      }
    });

    it('an empty storage path (each connection would get a private database) is refused too', async () => {
      const empty = new Sequelize({ dialect: 'sqlite', storage: '', logging: false });
      try {
        assert.throws(
          () => createOutbox({ sequelize: empty, publisher: new RecordingPublisher() }),
          (err: unknown) => err instanceof OutboxConfigError && /empty storage path/.test(err.message),
        );
      } finally {
        await empty.close();
      }
    });
  });
});
