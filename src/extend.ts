/**
 * dapr-outbox/extend: the extension surface, for a store of another database, another transport,
 * or the engine on ports of your own. An application that wires the outbox as the README shows
 * needs none of it.
 *
 * ```ts
 * import { OutboxEngine, type OutboxStore, type InboxStore, type TransactionPort } from 'dapr-outbox/extend';
 * const engine = new OutboxEngine({ store, inbox, publisher, transactions });
 * app.use(unitOfWorkMiddleware(engine));
 * app.use(createSubscriptionRouter({ outbox: engine }));
 * ```
 */
export type { Publisher, OutboxMessage, BulkPublishResult } from './ports/publisher';
export { EventState, type OutboxStore, type OutboxRecord, type OutboxStats, type OutboxOverview, type RepublishFilter, type ReleaseOptions, type LockedBatchOutcome, type RelayLockedOptions, type FailedMark, type StoreTransaction } from './ports/outbox-store';
export type { InboxKey, InboxKeyStore, InboxStore, KeyPosition } from './ports/inbox-store';
export type { EventPageQuery, EventPage, OutboxRowSummary } from './ports/outbox-store';
export type { InboxEntry, InboxPage, InboxPageQuery } from './ports/inbox-store';
export type { TransactionPort } from './ports/transactions';
export { OutboxEngine, type EngineOptions, type EnginePorts } from './core/outbox-engine';
export { IntegrationEventBus } from './core/bus';
export { UnitOfWork, currentUnitOfWork } from './core/unit-of-work';
export { DEFAULTS, type OutboxTuning, type ResolvedTuning } from './core/options';
export { retryDelayMs } from './core/failures';
export type { Clock } from './core/clock';
export type { OutboxEventName } from './core/events';
export { consoleLogger, silentLogger } from './core/logger';
export { ProcessorError, PROCESSOR_NAMES, cronExpressionFor, type ProcessorName, type Schedule } from './core/processors';
export { unitOfWorkMiddleware, unitOfWorkErrorHandler } from './http/unit-of-work-middleware';
export { healthHandler } from './http/health-handler';
export { HEALTH_DEFAULTS } from './core/health';
export { ROUTER_DEFAULTS, type RouterOutbox } from './http/router/router-options';
export type { CloudEvent, TopicRule, TopicValidator, DaprSubscription } from './http/router/types';
export type { DaprStatus, BulkEntryStatus } from './http/router/statuses';
export { migrations, runMigrations, resolveTableNames, DEFAULT_TABLE_NAMES, type Migration, type TableNames } from './adapters/sequelize/migrations';
export { SequelizeOutboxStore } from './adapters/sequelize/outbox-store';
export { SequelizeInboxKeyStore, SequelizeInboxStore } from './adapters/sequelize/inbox-store';
export { SequelizeTransactions } from './adapters/sequelize/transactions';
