/**
 * dapr-outbox/testing: a Dapr sidecar emulator (daprd's pubsub HTTP API over an in-memory
 * broker) for tests and local runs; docs/dapr-pubsub-contract.md is its specification.
 *
 * @example
 * import { DaprEmulator } from 'dapr-outbox/testing';
 * const emu = await DaprEmulator.start({ appId: 'users', appUrl: 'http://127.0.0.1:3000' });
 * // DAPR_HTTP_PORT=emu.port for the app; publish, then:
 * await emu.idle();
 * await emu.stop();
 */
export { DaprEmulator } from './emulator';
export type { AddSidecarOptions, AttachAppOptions, SidecarInfo } from './emulator';
export { EmulatorError } from './errors';
export type { EmulatorErrorCode } from './errors';
export { Faults } from './faults';
export type { HealthState, PublishFaultOptions, ReorderOptions } from './faults';
export type { DaprEmulatorOptions, EmulatorLogger, PubsubScopes, RetryPolicy } from './options';
export type {
  DeadLetterRecord,
  DeliveryOutcome,
  DeliveryRecord,
  DroppedRecord,
  PublishRecord,
  RequestRecord,
} from './records';
export type { BulkSubscribeSettings, RouteRule, Subscription } from './subscriptions';
export { ZERO_TRACEPARENT } from './envelope';
