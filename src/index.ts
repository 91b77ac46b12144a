/**
 * dapr-outbox: the transactional outbox and idempotent subscriptions for Express services on
 * Dapr pub/sub. Everything public is exported here, by name.
 */
export { createOutbox, Outbox, type OutboxOptions } from './outbox';
export { IntegrationEvent, type IntegrationEventLike } from './core/integration-event';
export { IntegrationEventBus } from './core/bus';
export type { PublishOptions } from './core/serialize';
export { UnitOfWork, currentUnitOfWork } from './core/unit-of-work';
export { OutboxEngine, type EngineOptions, type EnginePorts } from './core/outbox-engine';
export { DEFAULTS, retryDelayMs, type OutboxTuning, type ResolvedTuning } from './core/options';
export type { OutboxEventMap, OutboxEventName } from './core/events';
export type { Clock } from './core/clock';
export { consoleLogger, silentLogger, type Logger } from './core/logger';
export type { UnitOfWorkMiddlewareOptions } from './http/unit-of-work-middleware';
export { DaprPublisher, type DaprPublisherOptions } from './adapters/dapr/dapr-publisher';
export { migrations, runMigrations, DEFAULT_TABLE_NAMES, type Migration, type TableNames } from './adapters/sequelize/migrations';
export { SequelizeOutboxStore } from './adapters/sequelize/outbox-store';
export { SequelizeInboxStore } from './adapters/sequelize/inbox-store';
export type { Publisher, OutboxMessage, BulkPublishResult } from './ports/publisher';
export { EventState, type OutboxStore, type OutboxRecord, type OutboxStats, type RepublishFilter, type NewOutboxRow, type FailedMark } from './ports/outbox-store';
export type { InboxStore } from './ports/inbox-store';
export type { TransactionPort } from './ports/transactions';
export { OutboxError, OutboxConfigError, EventValidationError, PublishError, UnitOfWorkError, DropError } from './errors';
export { createSubscriptionRouter, type SubscriptionRouterOptions } from './subscriptions';
export type { SubscriptionRouter } from './http/router/subscription-router';
export { ROUTER_DEFAULTS, type RouterOutbox } from './http/router/router-options';
export type { CloudEvent, DeliveryContext, TopicHandler, TopicOptions, TopicRule, TopicValidator, DaprSubscription } from './http/router/types';
export type { DaprStatus, BulkEntryStatus } from './http/router/statuses';
export { ProcessorError, PROCESSOR_NAMES, cronExpressionFor, type ProcessorName, type Schedule } from './core/processors';
