/**
 * The services under load: the article's POST /register with the outbox (one event per request,
 * published on commit), and the same handler without events (a bare transaction).
 */
import { CommunicationProtocolEnum, DaprClient, LogLevel } from '@dapr/dapr';
import express, { type Express } from 'express';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { RegisterUserEvent } from '../../example/users/events';
import { createOutbox, type Outbox, type OutboxOptions } from '../../src';
import { silentLogger, type OutboxMessage, type OutboxStore, type Publisher } from '../../src/extend';
import { inTransaction } from '../../src/adapters/sequelize/transactions';

export { RegisterUserEvent };

export function defineUser(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('BenchUser', { account: { type: DataTypes.STRING(64), allowNull: false, unique: true }, mobile: { type: DataTypes.STRING(16), allowNull: false } }, { tableName: 'bench_users', timestamps: false });
}

export interface RegisterService {
  app: Express;
  outbox: Outbox;
  User: ModelStatic<Model>;
}

/** POST /register: creates the user and publishes RegisterUserEvent in the request's unit of work. */
export async function outboxService(sequelize: Sequelize, publisher: Publisher, options: Partial<OutboxOptions> = {}): Promise<RegisterService> {
  const outbox = createOutbox({ sequelize, publisher, logger: silentLogger, ...options });
  await outbox.migrate();
  const User = defineUser(sequelize);
  await User.sync();
  const app = express();
  app.use(express.json());
  app.use(outbox.middleware());
  app.post('/register', async (req, res) => {
    const { account, mobile } = req.body as { account: string; mobile: string };
    await User.create({ account, mobile });
    await outbox.bus.publish(new RegisterUserEvent(account, mobile));
    res.status(201).json({ ok: true });
  });
  return { app, outbox, User };
}

/**
 * The same handler with no outbox: the user is created in a transaction of its own. The
 * transaction goes through the library's SQLite write gate as the outbox's does (without it, 32
 * concurrent SQLite transactions fail with SQLITE_BUSY); on MariaDB it is a plain transaction.
 */
export async function bareService(sequelize: Sequelize): Promise<Express> {
  return (await registerApp(sequelize, (User, account, mobile) => inTransaction(sequelize, (transaction) => User.create({ account, mobile }, { transaction })))).app;
}

/**
 * POST /register on the bench's user model: `write(User, account, mobile)` does the work; the
 * answer is 201 once it resolved (a rejection is Express's 500).
 */
export async function registerApp(
  sequelize: Sequelize,
  write: (User: ModelStatic<Model>, account: string, mobile: string) => Promise<unknown>,
): Promise<{ app: Express; User: ModelStatic<Model> }> {
  const User = defineUser(sequelize);
  await User.sync();
  const app = express();
  app.use(express.json());
  app.post('/register', async (req, res) => {
    const { account, mobile } = req.body as { account: string; mobile: string };
    await write(User, account, mobile);
    res.status(201).json({ ok: true });
  });
  return { app, User };
}

/**
 * The naive dual write a user would write without this library: the same handler in a bare
 * transaction, then, after COMMIT, the event published with @dapr/dapr's DaprClient. No outbox
 * row: an event is lost if the process dies (or the publish fails) between the two.
 */
export async function naiveService(sequelize: Sequelize, daprPort: number): Promise<{ app: Express; client: DaprClient }> {
  const User = defineUser(sequelize);
  await User.sync();
  const client = new DaprClient({
    daprHost: '127.0.0.1',
    daprPort: String(daprPort),
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    isKeepAlive: true,
    logger: { level: LogLevel.Error },
  });
  const app = express();
  app.use(express.json());
  app.post('/register', async (req, res) => {
    const { account, mobile } = req.body as { account: string; mobile: string };
    await inTransaction(sequelize, (transaction) => User.create({ account, mobile }, { transaction }));
    const event = new RegisterUserEvent(account, mobile);
    const answer = await client.pubsub.publish('pubsub', event.topic, event);
    if (answer.error) throw answer.error;
    res.status(201).json({ ok: true });
  });
  return { app, client };
}

let accounts = 0;
/** A registration body with an account never used before in this process. */
export function registration(): string {
  accounts++;
  return `{"account":"u${process.pid}-${accounts}","mobile":"13800000000"}`;
}

/**
 * The outbox's store and dispatcher, for the benchmarks' instrumentation only (timing the
 * claims and marks, stamping the hand-off after commit). Applications never need them.
 */
export function internalsOf(outbox: Outbox): { store: OutboxStore; dispatcher: { dispatch(messages: readonly OutboxMessage[]): void } } {
  return outbox as unknown as { store: OutboxStore; dispatcher: { dispatch(messages: readonly OutboxMessage[]): void } };
}

/**
 * Calls `committed(messages, t)` when the unit of work hands its events to the dispatcher, which
 * it does right after COMMIT returned: the commit instant as the library learns of it.
 */
export function onCommitted(outbox: Outbox, committed: (messages: readonly OutboxMessage[], t: number) => void): void {
  const { dispatcher } = internalsOf(outbox);
  const dispatch = dispatcher.dispatch.bind(dispatcher);
  dispatcher.dispatch = (messages: readonly OutboxMessage[]) => {
    committed(messages, performance.now());
    dispatch(messages);
  };
}

/**
 * Calls `called(ids, t)` when a publish or bulk publish call of `publisher` starts, and
 * `accepted(ids, t)` when it resolved: the sink took the messages.
 */
export function watchPublishes(
  publisher: Publisher,
  on: { called?: (ids: readonly string[], t: number) => void; accepted?: (ids: readonly string[], t: number) => void },
): void {
  const publish = publisher.publish.bind(publisher);
  publisher.publish = async (m: OutboxMessage) => {
    on.called?.([m.id], performance.now());
    await publish(m);
    on.accepted?.([m.id], performance.now());
  };
  if (!publisher.publishBulk) return;
  const publishBulk = publisher.publishBulk.bind(publisher);
  publisher.publishBulk = async (ms: readonly OutboxMessage[]) => {
    on.called?.(ms.map((m) => m.id), performance.now());
    const outcome = await publishBulk(ms);
    const failed = new Set(outcome.failed.map((f) => f.id));
    on.accepted?.(ms.map((m) => m.id).filter((id) => !failed.has(id)), performance.now());
    return outcome;
  };
}
