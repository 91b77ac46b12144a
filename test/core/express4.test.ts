import assert from 'node:assert/strict';
import request from 'supertest';
import { createOutbox } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { createTestDb, type TestDb } from '../support/db';
import { defineUser, UserRegistered } from '../support/app';
import { RecordingPublisher } from '../support/recording-publisher';

// Express 4 is installed under the alias `express4` to check the middleware on both majors.
const express4 = require('express4') as typeof import('express');

describe('Express 4 smoke test', () => {
  let db: TestDb;
  before(async () => (db = await createTestDb('sqlite')));
  after(() => db.close());

  it('commits with the response and rolls back on a thrown error', async () => {
    const publisher = new RecordingPublisher();
    const outbox = createOutbox({ sequelize: db.sequelize, publisher, logger: silentLogger });
    await outbox.migrate();
    const User = defineUser(db.sequelize);
    await User.sync();
    const app = express4();
    app.use(express4.json());
    app.use(outbox.middleware());
    app.post('/users', async (req, res, next) => {
      try {
        await User.create({ account: req.body.account, mobile: '1' });
        await outbox.bus.publish(new UserRegistered(req.body.account, '1'));
        if (req.body.fail) throw new Error('boom');
        res.status(201).json({ ok: true });
      } catch (err) {
        next(err); // Express 4 does not catch rejected promises itself
      }
    });
    assert.equal((await request(app).post('/users').send({ account: 'four' })).status, 201);
    assert.equal((await request(app).post('/users').send({ account: 'broken', fail: true })).status, 500);
    await outbox.drain();
    assert.deepEqual((await User.findAll()).map((u) => u.get('account')), ['four']);
    assert.equal(publisher.messages.length, 1);
    await outbox.close();
  });
});
