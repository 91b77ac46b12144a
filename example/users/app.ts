/**
 * The users service of the MASA article (Assignment.IntegrationEventBus), in TypeScript:
 * POST /register creates a user and publishes RegisterUserEvent in one unit of work, and the
 * service subscribes to that event itself, logging "注册用户成功: <account>".
 */
import express, { type Express } from 'express';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
// In your service these come from 'dapr-outbox'.
import { timingSafeEqual } from 'node:crypto';
import { createAdminRouter, createOutbox, createSubscriptionRouter, type AdminAuthorize, type Logger, type Outbox, type OutboxOptions } from '../../src';
import type { Publisher } from '../../src/extend'; // in your service: from 'dapr-outbox/extend'
import { RegisterUserEvent } from './events';

export interface UsersServiceOptions {
  sequelize: Sequelize;
  publisher: Publisher;
  /** APP_API_TOKEN the sidecar sends with deliveries. Default: env APP_API_TOKEN. */
  appApiToken?: string;
  /** Where the service's own lines go. Default: console.log. */
  log?: (line: string) => void;
  /** The library's logger. Default: console warnings and errors. */
  logger?: Logger;
  /**
   * The admin dashboard's password (HTTP basic auth, any user name), at /admin. Default: env
   * ADMIN_TOKEN. Without it the dashboard is still mounted, and answers 401 to everything.
   */
  adminToken?: string;
  /** More outbox options (intervals, clock, ...). */
  outbox?: Partial<OutboxOptions>;
}

export interface UsersService {
  app: Express;
  outbox: Outbox;
  User: ModelStatic<Model>;
  Notice: ModelStatic<Model>;
  /** Stops the processors and waits for in-flight publishes; the database stays open. */
  close(): Promise<void>;
}

const ACCOUNT = /^[A-Za-z0-9_.-]{2,32}$/;
const MOBILE = /^\+?[0-9]{6,15}$/;

/** Checks a registration; returns the problems found (empty when valid). */
export function validateRegistration(body: unknown): string[] {
  const b = (body ?? {}) as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof b.account !== 'string' || !ACCOUNT.test(b.account)) problems.push('account must be 2-32 letters, digits, _ . or -');
  if (typeof b.mobile !== 'string' || !MOBILE.test(b.mobile)) problems.push('mobile must be 6-15 digits, optionally starting with +');
  return problems;
}

export async function createUsersService(options: UsersServiceOptions): Promise<UsersService> {
  const { sequelize, publisher } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  const outbox = createOutbox({ sequelize, publisher, logger: options.logger, ...options.outbox });
  await outbox.migrate();

  const User = sequelize.define('User', {
    account: { type: DataTypes.STRING(32), allowNull: false, unique: true },
    mobile: { type: DataTypes.STRING(16), allowNull: false },
  }, { tableName: 'users' });
  // What the subscription records, so that tests and people can see each delivery's effect.
  const Notice = sequelize.define('Notice', {
    eventId: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    account: { type: DataTypes.STRING(32), allowNull: false },
  }, { tableName: 'registration_notices' });
  await User.sync();
  await Notice.sync();

  const app = express();
  // Readiness and liveness probes: 200 while the processors run, the backlog is younger than
  // 5 minutes and the sidecar answers its health check; 503 with the reasons otherwise.
  app.get('/health', outbox.healthHandler({ maxPendingAge: 300 }));

  // The subscriptions: GET /dapr/subscribe and the delivery route. Each delivery runs in its own
  // transaction with the inbox, so a redelivered event has no second effect.
  const router = createSubscriptionRouter({ outbox, appApiToken: options.appApiToken });
  router.topic('pubsub', 'RegisterUserEvent', async (event: RegisterUserEvent, ctx) => {
    log(`注册用户成功: ${event.account}`);
    await Notice.create({ eventId: ctx.id, account: event.account });
  }, {
    route: '/IntegrationEvent/RegisterUser',
    // An event that could never be handled is dropped (DROP), not retried forever.
    validate: (event) => validateRegistration(event).length === 0,
  });
  app.use(router);

  // The admin dashboard and its API, closed unless a token is set (basic auth, password = token).
  const adminToken = options.adminToken ?? process.env.ADMIN_TOKEN;
  app.use('/admin', createAdminRouter({ outbox, authorize: adminToken ? basicAuth(adminToken) : undefined, subscriptions: router }));

  app.use(express.json({ limit: '100kb' }));
  app.use(outbox.middleware());

  app.post('/register', async (req, res) => {
    const problems = validateRegistration(req.body);
    if (problems.length > 0) return void res.status(400).json({ error: 'invalid registration', problems });
    const { account, mobile } = req.body as { account: string; mobile: string };
    if (await User.findOne({ where: { account } })) return void res.status(409).json({ error: `account ${account} is taken` });
    const user = await User.create({ account, mobile });
    const event = new RegisterUserEvent(account, mobile);
    await outbox.bus.publish(event);
    res.status(201).json({ id: user.get('id'), account, eventId: event.id });
  });

  app.get('/notices', async (_req, res) => {
    const rows = await Notice.findAll({ order: [['id', 'ASC']] });
    res.json(rows.map((r) => ({ eventId: r.get('eventId'), account: r.get('account') })));
  });

  // A body express.json() cannot parse is the client's fault: 400, not 500.
  app.use((err: { type?: string; status?: number; message?: string }, _req: express.Request, res: express.Response, next: express.NextFunction) => {
    if (err.type === 'entity.parse.failed' || err.type === 'entity.too.large') return void res.status(err.status ?? 400).json({ error: err.message });
    next(err);
  });

  return { app, outbox, User, Notice, close: () => outbox.close() };
}

/** HTTP basic auth whose password is `token` (any user name); the browser asks for it. */
export function basicAuth(token: string): AdminAuthorize {
  const expected = Buffer.from(token);
  return (req, res) => {
    const header = req.headers.authorization ?? '';
    const decoded = header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString() : '';
    const password = Buffer.from(decoded.slice(decoded.indexOf(':') + 1));
    if (decoded.includes(':') && password.length === expected.length && timingSafeEqual(password, expected)) return true;
    res.setHeader('WWW-Authenticate', 'Basic realm="dapr-outbox admin", charset="UTF-8"');
    return false;
  };
}
