import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Sequelize } from 'sequelize';
import { OutboxConfigError } from './errors';
import { checkTableName, maxIndexedTableName } from './core/options';
import { OutboxEngine, type EngineOptions } from './core/outbox-engine';
import type { Publisher } from './ports/publisher';
import { resolveTableNames, runMigrations, type TableNames } from './adapters/sequelize/migrations';
import { SequelizeOutboxStore } from './adapters/sequelize/outbox-store';
import { SequelizeInboxStore } from './adapters/sequelize/inbox-store';
import { SequelizeTransactions } from './adapters/sequelize/transactions';
import { prepareConnection, refuseSqliteMemory, setWriteWait } from './adapters/sequelize/write-gate';
import { unitOfWorkErrorHandler, unitOfWorkMiddleware, type UnitOfWorkMiddlewareOptions } from './http/unit-of-work-middleware';
import { healthHandler } from './http/health-handler';
import type { HealthOptions } from './core/health';

/** Options of `createOutbox()`. Durations are in seconds; see OutboxTuning for each default. */
export interface OutboxOptions extends EngineOptions {
  /** The application's Sequelize instance (MySQL/MariaDB through mysql2, or SQLite). Required. */
  sequelize: Sequelize;
  /** Where committed events go: `new DaprPublisher()` or your own Publisher. Required. */
  publisher: Publisher;
  /** Table names. Default: integration_event_log, integration_event_inbox, dapr_outbox_migrations. */
  tables?: Partial<TableNames>;
  /**
   * SQLite only: how long a transaction waits for the database's single writer slot, seconds.
   * A request that waits longer fails with UnitOfWorkError, status 503. Default 10.
   */
  writeLockWait?: number;
}

/**
 * The outbox of one service: bus, unit-of-work middleware, processors and migrations, on the
 * application's Sequelize instance.
 */
export class Outbox extends OutboxEngine {
  readonly sequelize: Sequelize;
  readonly tables: TableNames;

  constructor(options: OutboxOptions, stores: { outbox: SequelizeOutboxStore; inbox: SequelizeInboxStore; tables: TableNames }) {
    super(
      { store: stores.outbox, inbox: stores.inbox, publisher: options.publisher, transactions: new SequelizeTransactions(options.sequelize) },
      options,
    );
    this.sequelize = options.sequelize;
    this.tables = stores.tables;
  }

  /** Creates or upgrades the outbox and inbox tables (versioned, idempotent). Returns the steps run. */
  async migrate(): Promise<string[]> {
    await prepareConnection(this.sequelize);
    const applied = await runMigrations(this.sequelize, this.tables);
    await this.clock.sync?.();
    return applied;
  }

  /**
   * The unit-of-work middleware: one transaction per request (POST, PUT, PATCH, DELETE by
   * default), committed before the response is sent.
   *
   * ```ts
   * app.use(outbox.middleware());
   * ```
   */
  middleware(options?: UnitOfWorkMiddlewareOptions): RequestHandler {
    return unitOfWorkMiddleware(this, options);
  }

  /** An error middleware that rolls the request's unit of work back, then passes the error on. */
  errorHandler(): ErrorRequestHandler {
    return unitOfWorkErrorHandler();
  }

  /**
   * An express handler for health probes: 200 with `outbox.health()`'s report when healthy, 503
   * with it (and its `reasons`) when not. Thresholds are options, checked here.
   *
   * ```ts
   * app.get('/health', outbox.healthHandler({ maxPendingAge: 300 }));
   * ```
   */
  healthHandler(options?: HealthOptions): RequestHandler {
    return healthHandler(this, options);
  }
}

/**
 * Creates the outbox of a service.
 *
 * ```ts
 * const outbox = createOutbox({ sequelize, publisher: new DaprPublisher({ pubsubName: 'pubsub' }) });
 * await outbox.migrate();
 * app.use(outbox.middleware());
 * outbox.start();
 * ```
 */
export function createOutbox(options: OutboxOptions): Outbox {
  if (!options || typeof options !== 'object') throw new OutboxConfigError('options', options, 'must be an object');
  const { sequelize, publisher } = options;
  if (!sequelize || typeof (sequelize as { query?: unknown }).query !== 'function' || typeof (sequelize as { getDialect?: unknown }).getDialect !== 'function') {
    throw new OutboxConfigError('sequelize', sequelize === undefined ? undefined : typeof sequelize, 'must be a Sequelize instance');
  }
  if (!publisher || typeof (publisher as { publish?: unknown }).publish !== 'function') {
    throw new OutboxConfigError('publisher', publisher === undefined ? undefined : typeof publisher, 'must implement Publisher (a publish(message) method)');
  }
  refuseSqliteMemory(sequelize);
  if (options.writeLockWait !== undefined) {
    if (typeof options.writeLockWait !== 'number' || !Number.isFinite(options.writeLockWait) || options.writeLockWait <= 0) {
      throw new OutboxConfigError('writeLockWait', options.writeLockWait, 'must be a number of seconds > 0');
    }
    setWriteWait(sequelize, options.writeLockWait * 1000);
  }
  const tables: TableNames = resolveTableNames(options.tables);
  const indexedMax = maxIndexedTableName(sequelize.getDialect());
  for (const [key, name] of Object.entries(tables)) checkTableName(name, `tables.${key}`, key === 'outbox' || key === 'inbox' ? indexedMax : undefined);
  return new Outbox(options, {
    outbox: new SequelizeOutboxStore(sequelize, tables.outbox, tables.outboxKeys),
    inbox: new SequelizeInboxStore(sequelize, tables.inbox, tables.inboxKeys),
    tables,
  });
}
