import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import request from 'supertest';
import { QueryTypes } from 'sequelize';
import { RabbitMqPublisher } from '../../example/custom-publisher/rabbitmq-publisher';
import { createTestDb, type TestDb } from '../support/db';
import { createTestService, type TestService } from '../support/app';

/** A RabbitMQ server, e.g. amqp://guest:guest@127.0.0.1:5672; without it these tests are skipped. */
const RABBITMQ_URL = process.env.TEST_RABBITMQ_URL;

describe('a custom publisher (RabbitMQ) plugged into the outbox', () => {
  let db: TestDb | undefined;
  let svc: TestService | undefined;
  let publisher: RabbitMqPublisher | undefined;
  let consumer: ChannelModel | undefined;
  const exchange = `test-events-${randomBytes(4).toString('hex')}`;
  const received: ConsumeMessage[] = [];

  before(async function () {
    if (!RABBITMQ_URL) {
      console.log('      skipped: set TEST_RABBITMQ_URL (e.g. amqp://guest:guest@127.0.0.1:5672) to run the RabbitMQ publisher tests');
      this.skip();
    }
    db = await createTestDb('sqlite');
    publisher = await RabbitMqPublisher.connect(RABBITMQ_URL, exchange);
    svc = await createTestService(db.sequelize, { publisher });
    consumer = await amqp.connect(RABBITMQ_URL);
    const channel = await consumer.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, exchange, 'UserRegistered');
    await channel.consume(queue, (msg) => msg && received.push(msg), { noAck: true });
  });
  after(async () => {
    // Safe whatever `before` got to: it may have been skipped or failed half-way.
    await svc?.outbox.close();
    await consumer?.close();
    if (RABBITMQ_URL && publisher) {
      const admin = await amqp.connect(RABBITMQ_URL);
      const ch = await admin.createChannel();
      await ch.deleteExchange(exchange);
      await admin.close();
    }
    await db?.close();
  });

  it('publishes committed events to RabbitMQ with the event id as message id', async () => {
    if (!svc || !db) throw new Error('not set up');
    const res = await request(svc.app).post('/users').send({ account: 'rabbit', mobile: '1', events: 3 });
    assert.equal(res.status, 201);
    await svc.outbox.drain();
    for (let i = 0; i < 100 && received.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(received.length, 3);
    const rows = await db.sequelize.query('SELECT event_id, state FROM integration_event_log ORDER BY id', { type: QueryTypes.SELECT });
    assert.deepEqual(
      received.map((m) => m.properties.messageId).sort(),
      (rows as Array<{ event_id: string }>).map((r) => r.event_id).sort(),
    );
    assert.ok((rows as Array<{ state: number }>).every((r) => r.state === 2));
    assert.equal(JSON.parse(received[0]!.content.toString()).topic, 'UserRegistered');
  });
});
