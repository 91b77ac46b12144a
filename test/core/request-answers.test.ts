/**
 * The unit-of-work middleware under ordinary Express code: errors after the answer, streamed
 * answers to slow clients, transactions of the app's own inside a request, and publishing after
 * the answer.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import express from 'express';
import request from 'supertest';
import { UnitOfWorkError } from '../../src';
import { EventState } from '../../src/extend';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { createTestService, UserRegistered, type TestService } from '../support/app';
import { recordingLogger } from '../router/helpers';
import { readRows } from '../support/rows';
import { createDeferredForeignKey, ORPHAN_INSERT } from '../support/failing-commit';

for (const kind of testDialects()) {
  describe(`the request's answer under the unit of work (${kind})`, () => {
    let db: TestDb;
    let svc: TestService;
    let logger: ReturnType<typeof recordingLogger>;
    let uncaught: unknown[];
    const onUncaught = (err: unknown) => uncaught.push(err);

    beforeEach(async () => {
      uncaught = [];
      process.on('uncaughtException', onUncaught);
      process.on('unhandledRejection', onUncaught);
      db = await createTestDb(kind);
      logger = recordingLogger();
      svc = await createTestService(db.sequelize, { logger });
    });
    afterEach(async () => {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
      await svc.outbox.close();
      await db.close();
    });

    /** Waits a little for anything that would go wrong after the answer (a crash, a late write). */
    const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

    describe('an error after the answer: the answer stands', () => {
      it('a throw after res.status(201).json(): the client gets the 201, the work commits, nothing crashes', async () => {
        svc.app.post('/late-throw', async (req, res) => {
          await svc.User.create({ account: req.body.account, mobile: '1' });
          await svc.outbox.bus.publish(new UserRegistered(req.body.account, '1'));
          res.status(201).json({ ok: true });
          throw new Error('after the answer');
        });
        const counted: unknown[] = [];
        svc.outbox.on('afterAnswer', (e) => counted.push(e));
        const res = await request(svc.app).post('/late-throw').send({ account: 'late' });
        assert.equal(res.status, 201);
        assert.deepEqual(res.body, { ok: true });
        await settle();
        await svc.outbox.drain();
        assert.deepEqual(uncaught, []);
        assert.equal(await svc.User.count(), 1);
        assert.equal(svc.publisher.messages.length, 1);
        assert.ok(logger.entries.some((e) => e.level === 'warn' && /after the response was answered/.test(e.message)));
        assert.deepEqual(counted, [{ method: 'POST', url: '/late-throw', what: 'error' }]);
      });

      it('a rejected promise after the answer (an await, then a throw)', async () => {
        svc.app.post('/late-reject', async (req, res) => {
          await svc.User.create({ account: req.body.account, mobile: '1' });
          res.status(201).json({ ok: true });
          await new Promise((resolve) => setImmediate(resolve));
          throw new Error('rejected after the answer');
        });
        const res = await request(svc.app).post('/late-reject').send({ account: 'later' });
        assert.equal(res.status, 201);
        assert.deepEqual(res.body, { ok: true });
        await settle();
        assert.deepEqual(uncaught, []);
        assert.equal(await svc.User.count(), 1);
      });

      it('res.json() twice: the first answer goes out, the second is ignored and logged', async () => {
        svc.app.post('/twice', async (req, res) => {
          await svc.User.create({ account: req.body.account, mobile: '1' });
          res.status(201).json({ first: true });
          res.status(202).json({ second: true });
        });
        const counted: unknown[] = [];
        svc.outbox.on('afterAnswer', (e) => counted.push(e));
        const res = await request(svc.app).post('/twice').send({ account: 'twice' });
        assert.equal(res.status, 201);
        assert.deepEqual(res.body, { first: true });
        await settle();
        assert.deepEqual(uncaught, []);
        assert.equal(await svc.User.count(), 1);
        assert.ok(logger.entries.some((e) => e.level === 'warn' && /already answered/.test(e.message)));
        assert.deepEqual(counted, [{ method: 'POST', url: '/twice', what: 'end' }]);
      });

      it('an error handler that sees the late error does not roll the answered work back', async () => {
        const app = express();
        app.use(express.json());
        app.use(svc.outbox.middleware());
        app.post('/late', async (req, res) => {
          await svc.User.create({ account: req.body.account, mobile: '1' });
          res.status(201).json({ ok: true });
          throw new Error('late');
        });
        app.use(svc.outbox.errorHandler());
        const res = await request(app).post('/late').send({ account: 'handled' });
        assert.equal(res.status, 201);
        await settle();
        assert.equal(await svc.User.count(), 1);
      });
    });

    describe('an answer in pieces: every piece goes out, and nothing crashes', () => {
      const pieces: Array<[string, (res: express.Response) => void, string]> = [
        ['res.write() then res.end()', (res) => (res.write('one,'), res.end('two')), 'one,two'],
        ['res.writeHead() then res.end()', (res) => (res.writeHead(201, { 'content-type': 'text/plain' }), res.end('hello')), 'hello'],
        ['res.flushHeaders() then res.end()', (res) => (res.status(201).type('text/plain').flushHeaders(), res.end('bye')), 'bye'],
      ];
      for (const [name, answer, body] of pieces) {
        it(name, async () => {
          svc.app.post('/pieces', async (_req, res) => {
            await svc.User.create({ account: 'pieces', mobile: '1' });
            answer(res);
          });
          const res = await request(svc.app).post('/pieces').buffer(true).parse((r, done) => {
            let text = '';
            r.on('data', (c: Buffer) => (text += c.toString()));
            r.on('end', () => done(null, text));
          });
          assert.equal(res.body, body);
          await settle();
          assert.deepEqual(uncaught, []);
          assert.equal(await svc.User.count(), 1);
        });
      }
    });

    it('a streamed answer keeps its backpressure: a client that does not read stalls the producer', async function () {
      this.timeout(60_000);
      const total = 128 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 120);
      let produced = 0;
      svc.app.post('/export', async (_req, res) => {
        await svc.User.create({ account: 'exporter', mobile: '1' });
        res.status(200).type('application/octet-stream');
        Readable.from(
          (function* () {
            while (produced < total) {
              produced += chunk.length;
              yield chunk;
            }
          })(),
        ).pipe(res);
      });
      const server = http.createServer(svc.app).listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
      const { port } = server.address() as AddressInfo;
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/export', headers: { 'content-length': 0 } });
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        req.once('response', resolve).once('error', reject);
        req.end();
      });
      response.pause();
      try {
        assert.equal(response.statusCode, 200);
        // Wait until the producer stops (it fills the socket, then waits for 'drain').
        let last = -1;
        while (produced !== last) {
          last = produced;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
        console.log(`      backpressure: ${(produced / 1024 / 1024).toFixed(1)} MiB of 128 MiB produced before the producer waited`);
        assert.ok(produced < 32 * 1024 * 1024, `the producer went on to ${produced} bytes while nobody read`);
        assert.equal(await svc.User.count(), 1, 'the unit of work committed when the answer started');
      } finally {
        req.destroy();
        response.destroy();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    if (kind === 'sqlite') {
      it('a streamed answer whose commit fails gets the 500, and the stream going on after it crashes nothing', async () => {
        await createDeferredForeignKey(db.sequelize);
        svc.app.post('/doomed-stream', async (_req, res) => {
          await db.sequelize.query(ORPHAN_INSERT);
          res.status(200).type('text/plain');
          Readable.from(['a', 'b', 'c', 'd'].map((c) => c.repeat(64 * 1024))).pipe(res);
        });
        const res = await request(svc.app).post('/doomed-stream').send({});
        assert.equal(res.status, 500);
        assert.deepEqual(res.body, { error: 'UnitOfWorkError', message: 'the request could not be committed' });
        await settle();
        assert.deepEqual(uncaught, []);
      });

      it('a handler that keeps writing after its failed commit was answered 500 crashes nothing', async () => {
        await createDeferredForeignKey(db.sequelize);
        let wrote!: () => void;
        const done = new Promise<void>((resolve) => (wrote = resolve));
        svc.app.post('/doomed-writes', async (_req, res) => {
          await db.sequelize.query(ORPHAN_INSERT);
          res.write('first');
          setTimeout(() => {
            res.write('second');
            res.end('last');
            wrote();
          }, 50);
        });
        const res = await request(svc.app).post('/doomed-writes').send({});
        assert.equal(res.status, 500);
        await done;
        await settle();
        assert.deepEqual(uncaught, []);
      });
    }

    describe("a transaction of the app's own inside a request: the innermost transaction wins", () => {
      it('an event published in a managed transaction that rolls back is neither stored nor published', async () => {
        svc.app.post('/inner-rollback', async (req, res) => {
          await db.sequelize
            .transaction(async () => {
              await svc.outbox.bus.publish(new UserRegistered('ghost', '1'));
              await svc.User.create({ account: 'ghost', mobile: '1' });
              throw new Error('the order is refused');
            })
            .catch(() => undefined);
          await svc.outbox.bus.publish(new UserRegistered(req.body.account, '2'));
          res.status(201).json({ ok: true });
        });
        const res = await request(svc.app).post('/inner-rollback').send({ account: 'real' });
        assert.equal(res.status, 201);
        await svc.outbox.drain();
        assert.deepEqual(
          svc.publisher.messages.map((m) => JSON.parse(m.content).account),
          ['real'],
        );
        const stats = await svc.outbox.stats();
        assert.equal(stats.published, 1);
        assert.equal(stats.notPublished + stats.inProgress + stats.publishedFailed + stats.terminalFailed, 0);
        assert.equal(await svc.User.count(), 0);
      });

      it('an event published in a managed transaction that commits is written in it and published after it', async () => {
        let rowsAtInnerCommit = -1;
        svc.app.post('/inner-commit', async (_req, res) => {
          await db.sequelize.transaction(async (t) => {
            await svc.User.create({ account: 'inner', mobile: '1' });
            await svc.outbox.bus.publish(new UserRegistered('inner', '1'));
            t.afterCommit(async () => {
              const stats = await svc.outbox.stats();
              rowsAtInnerCommit = Object.values(stats).reduce((a, b) => a + b, 0);
            });
          });
          res.status(201).json({ ok: true });
        });
        const res = await request(svc.app).post('/inner-commit').send({});
        assert.equal(res.status, 201);
        await svc.outbox.drain();
        assert.equal(rowsAtInnerCommit, 1, 'the row was written in the inner transaction');
        assert.deepEqual(svc.publisher.messages.map((m) => JSON.parse(m.content).account), ['inner']);
        assert.equal((await svc.outbox.stats()).published, 1);
      });
    });

    describe('publishing after the unit of work completed', () => {
      it('throws UnitOfWorkError (phase publish), every time, and nothing is stored', async () => {
        const errors: unknown[] = [];
        svc.app.post('/publish-late', async (req, res) => {
          res.status(201).json({ ok: true });
          if (req.body.wait) await new Promise((resolve) => setTimeout(resolve, 50));
          try {
            await svc.outbox.bus.publish(new UserRegistered('late', '1'));
          } catch (err) {
            errors.push(err);
          }
        });
        for (let i = 0; i < 10; i++) {
          const res = await request(svc.app).post('/publish-late').send({ wait: i % 2 === 1 });
          assert.equal(res.status, 201);
        }
        await settle();
        assert.equal(errors.length, 10);
        for (const err of errors) {
          assert.ok(err instanceof UnitOfWorkError, String(err));
          assert.equal(err.phase, 'publish');
          assert.match(err.message, /runInUnitOfWork/);
        }
        await svc.outbox.drain();
        assert.equal(svc.publisher.messages.length, 0);
        const stats = await svc.outbox.stats();
        assert.equal(Object.values(stats).reduce((a, b) => a + b, 0), 0);
      });

      it('runInUnitOfWork after the answer publishes the event in a unit of work of its own', async () => {
        let done!: Promise<void>;
        svc.app.post('/after', async (_req, res) => {
          res.status(202).json({ accepted: true });
          done = svc.outbox.runInUnitOfWork(async () => {
            await svc.outbox.bus.publish(new UserRegistered('after', '1'));
          });
        });
        const res = await request(svc.app).post('/after').send({});
        assert.equal(res.status, 202);
        await done;
        await svc.outbox.drain();
        const [row] = await readRows(svc.outbox, svc.publisher.ids());
        assert.equal(row?.state, EventState.Published);
      });
    });
  });
}
