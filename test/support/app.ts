import express, { type Express } from 'express';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { createOutbox, IntegrationEvent, type Outbox, type OutboxOptions } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { RecordingPublisher } from './recording-publisher';

export class UserRegistered extends IntegrationEvent {
  constructor(
    public account: string,
    public mobile: string,
  ) {
    super();
  }
}

export function defineUser(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('User', { account: { type: DataTypes.STRING, unique: true }, mobile: DataTypes.STRING }, { tableName: 'users', timestamps: false });
}

export interface TestService {
  app: Express;
  outbox: Outbox;
  publisher: RecordingPublisher;
  User: ModelStatic<Model>;
}

/** A small service: POST /users creates a user and publishes UserRegistered in one unit of work. */
export async function createTestService(sequelize: Sequelize, options: Partial<OutboxOptions> = {}): Promise<TestService> {
  const publisher = (options.publisher as RecordingPublisher | undefined) ?? new RecordingPublisher();
  const outbox = createOutbox({ sequelize, publisher, logger: silentLogger, ...options });
  await outbox.migrate();
  const User = defineUser(sequelize);
  await User.sync();
  const app = express();
  app.use(express.json());
  app.use(outbox.middleware());
  app.post('/users', async (req, res) => {
    const { account, mobile, events = 1, fail, status } = req.body as Record<string, never>;
    await User.create({ account, mobile });
    for (let i = 0; i < (events as number); i++) await outbox.bus.publish(new UserRegistered(i === 0 ? account : `${account}#${i}`, mobile));
    if (fail === 'throw') throw new Error('handler failed');
    if (status) return void res.status(status).json({ ok: false });
    res.status(201).json({ ok: true });
  });
  app.post('/users/next-error', async (req, res, next) => {
    await User.create({ account: req.body.account, mobile: '1' });
    await outbox.bus.publish(new UserRegistered(req.body.account, '1'));
    next(new Error('passed to next'));
  });
  return { app, outbox, publisher, User };
}
