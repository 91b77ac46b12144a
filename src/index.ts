/**
 * dapr-outbox: the transactional outbox and idempotent subscriptions for Express services on
 * Dapr pub/sub. This entry holds what an application uses; the extension surface (ports, the
 * engine, stores, migrations) is `dapr-outbox/extend`, and the Dapr emulator `dapr-outbox/testing`.
 */
export { createOutbox, type Outbox, type OutboxOptions } from './outbox';
export { createSubscriptionRouter, type SubscriptionRouterOptions } from './subscriptions';
export type { SubscriptionRouter } from './http/router/subscription-router';
export { createAdminRouter, type AdminRouterOptions, type AdminAuthorize, type AdminOutbox } from './http/admin/admin-router';
export { IntegrationEvent } from './core/integration-event';
export type { PublishOptions } from './core/serialize';
export { DaprPublisher, type DaprPublisherOptions } from './adapters/dapr/dapr-publisher';
export { OutboxError, OutboxConfigError, EventValidationError, PublishError, UnitOfWorkError, DropError } from './errors';
export type { OutboxTuning } from './core/options';
export type { UnitOfWorkMiddlewareOptions } from './http/unit-of-work-middleware';
export type { DeliveryContext, TopicHandler, TopicOptions } from './http/router/types';
export type { OutboxEventMap } from './core/events';
export type { OutboxStats, OutboxOverview, OutboxRowSummary, RepublishFilter } from './ports/outbox-store';
export type { Logger } from './core/logger';
export type { HealthOptions, OutboxHealth } from './core/health';
export type { ProcessorStatus } from './core/processors';
