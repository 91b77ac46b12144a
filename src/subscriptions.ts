import type { Sequelize } from 'sequelize';
import { SequelizeInboxStore } from './adapters/sequelize/inbox-store';
import { SequelizeTransactions } from './adapters/sequelize/transactions';
import { refuseSqliteMemory } from './adapters/sequelize/write-gate';
import { subscriptionRouter, type SubscriptionRouter } from './http/router/subscription-router';
import type { InboxPorts, RouterOutbox, SubscriptionRouterOptions as RouterOptions } from './http/router/router-options';

/** Options of `createSubscriptionRouter()`. */
export interface SubscriptionRouterOptions extends Omit<RouterOptions, 'outbox' | 'sequelize'> {
  /**
   * The service's outbox: turns the inbox on (its table and transactions), and its logger becomes
   * the router's default. Handlers can then `outbox.bus.publish()` in the delivery's
   * transaction: the events commit with the handler's writes and the inbox record.
   */
  outbox?: RouterOutbox;
  /**
   * A Sequelize instance, to use the inbox without an outbox. Its table must exist
   * (`runMigrations(sequelize)` creates it). When `outbox` is given too, it must be the outbox's own.
   */
  sequelize?: Sequelize;
}

/**
 * Creates the subscription router: `GET /dapr/subscribe`, one route per topic, and the inbox.
 *
 * ```ts
 * const router = createSubscriptionRouter({ outbox });           // inbox on: exactly-once effects
 * router.topic('pubsub', 'RegisterUserEvent', async (event: RegisterUserEvent, ctx) => {
 *   await Welcome.create({ account: event.account });            // joins the delivery's transaction
 * });
 * app.use(router);
 * ```
 */
export function createSubscriptionRouter(options: SubscriptionRouterOptions = {}): SubscriptionRouter {
  return subscriptionRouter(options, sequelizeInbox);
}

function sequelizeInbox(database: unknown, table: string): InboxPorts {
  const sequelize = database as Sequelize;
  refuseSqliteMemory(sequelize);
  return { store: new SequelizeInboxStore(sequelize, table), transactions: new SequelizeTransactions(sequelize) };
}
