/**
 * A second service, run as its own process: it subscribes to the users service's
 * RegisterUserEvent and "sends a welcome message" (records it). Its inbox makes each event's
 * effect happen once, however often the sidecar delivers it.
 */
import express, { type Express } from 'express';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import { createSubscriptionRouter } from '../../src';
import { runMigrations } from '../../src/extend'; // in your service: from 'dapr-outbox/extend'

export interface NotificationsService {
  app: Express;
  Welcome: ModelStatic<Model>;
}

export async function createNotificationsService(options: { sequelize: Sequelize; appApiToken?: string; log?: (line: string) => void }): Promise<NotificationsService> {
  const { sequelize } = options;
  const log = options.log ?? ((line: string) => console.log(line));
  // This service only receives: it needs the inbox table, not a publisher.
  await runMigrations(sequelize);
  const Welcome = sequelize.define('Welcome', {
    eventId: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    account: { type: DataTypes.STRING(32), allowNull: false },
  }, { tableName: 'welcome_messages' });
  await Welcome.sync();

  const app = express();
  app.get('/health', (_req, res) => void res.json({ status: 'ok' }));
  const router = createSubscriptionRouter({ sequelize, appApiToken: options.appApiToken, consumer: 'notifications' });
  router.topic('pubsub', 'RegisterUserEvent', async (event: { account: string }, ctx) => {
    await Welcome.create({ eventId: ctx.id, account: event.account });
    log(`welcome message sent to ${event.account}`);
  });
  app.use(router);
  app.get('/welcomes', async (_req, res) => {
    const rows = await Welcome.findAll({ order: [['id', 'ASC']] });
    res.json(rows.map((r) => ({ eventId: r.get('eventId'), account: r.get('account') })));
  });
  return { app, Welcome };
}
