import express, { type Express } from 'express';
import { createAdminRouter, createOutbox, createSubscriptionRouter, type AdminRouterOptions, type Outbox } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { RecordingPublisher } from './recording-publisher';
import type { Sequelize } from 'sequelize';

/** The bearer token the admin tests authorize with. */
export const ADMIN_TOKEN = 'test-admin-token';

export interface AdminFixture {
  app: Express;
  outbox: Outbox;
  publisher: RecordingPublisher;
}

/** An app with the outbox, a subscription router and the admin at /admin, authorized by bearer token. */
export async function createAdminApp(sequelize: Sequelize, options: Partial<AdminRouterOptions> = {}): Promise<AdminFixture> {
  const publisher = new RecordingPublisher();
  const outbox = createOutbox({ sequelize, publisher, logger: silentLogger });
  await outbox.migrate();
  const subscriptions = createSubscriptionRouter({ outbox, appApiToken: null });
  subscriptions.topic('pubsub', 'OrderPlaced', () => undefined, { deadLetterTopic: 'orders-dead' });
  const app = express();
  app.use(subscriptions);
  app.use(
    '/admin',
    createAdminRouter({
      outbox,
      authorize: (req) => req.headers.authorization === `Bearer ${ADMIN_TOKEN}`,
      subscriptions,
      ...options,
    }),
  );
  return { app, outbox, publisher };
}

export interface SeedSpec {
  /** Rows per kind. */
  published?: number;
  pending?: number;
  retrying?: number;
  terminal?: number;
  topic?: string;
  /** Prefix of the event ids. */
  prefix?: string;
}

/**
 * Writes rows in the states asked for, through the store port as the engine would: inserted
 * (leased), then marked published, failed with a retry to come, or failed for good.
 */
export async function seed(outbox: Outbox, spec: SeedSpec): Promise<Record<'published' | 'pending' | 'retrying' | 'terminal', string[]>> {
  const store = outbox.store;
  const owner = 'seed';
  const now = Date.now();
  const prefix = spec.prefix ?? 'evt';
  const topic = spec.topic ?? 'OrderPlaced';
  const ids = { published: [] as string[], pending: [] as string[], retrying: [] as string[], terminal: [] as string[] };
  let n = 0;
  for (const kind of ['published', 'pending', 'retrying', 'terminal'] as const) {
    const count = spec[kind] ?? 0;
    const rows = Array.from({ length: count }, () => {
      const id = `${prefix}-${kind}-${++n}`;
      ids[kind].push(id);
      return { id, topic, pubsubName: 'pubsub', eventTypeName: topic, content: JSON.stringify({ id, kind, note: `order ${n} of ${kind}` }), creationTime: now - 1000 + n };
    });
    if (rows.length === 0) continue;
    await store.insert(rows, null, owner, now + 60_000, now);
    if (kind === 'published') await store.markPublished(ids[kind], now);
    if (kind === 'pending') await store.release(ids[kind], owner, now + 3_600_000);
    if (kind === 'retrying') await store.markFailed(ids[kind].map((id) => ({ id, error: 'broker down', nextAttemptTime: now + 3_600_000 })), owner, now);
    if (kind === 'terminal') await store.markFailed(ids[kind].map((id) => ({ id, error: `broker refused ${id}`, nextAttemptTime: null })), owner, now);
  }
  return ids;
}
