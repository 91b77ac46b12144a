import { randomUUID } from 'node:crypto';

/**
 * Base class of integration events: facts one service tells others about. The whole object
 * (own enumerable fields, including `id`, `creationTime` and `topic`) is the message body.
 *
 * ```ts
 * class RegisterUserEvent extends IntegrationEvent {
 *   constructor(public account: string, public mobile: string) { super(); }
 * }
 * await outbox.bus.publish(new RegisterUserEvent('alice', '13800000000'));
 * ```
 *
 * The topic defaults to the class name; override it with a `static topic`, or pass `{ topic }`
 * to the constructor.
 */
export abstract class IntegrationEvent {
  /** Unique event id (uuid v4). Subscribers see it as the CloudEvent id on every delivery. */
  id: string;
  /** When the event was created, ISO 8601 in UTC. */
  creationTime: string;
  /** The pub/sub topic. */
  topic: string;

  constructor(init: { id?: string; creationTime?: Date | string; topic?: string } = {}) {
    this.id = init.id ?? randomUUID();
    const created = init.creationTime ?? new Date();
    this.creationTime = typeof created === 'string' ? created : created.toISOString();
    const ctor = this.constructor as { topic?: unknown; name: string };
    this.topic = init.topic ?? (typeof ctor.topic === 'string' ? ctor.topic : ctor.name);
  }
}

/**
 * The event type name stored in the outbox: the name of the event's constructor. A plain object
 * (whose constructor is Object), an object without a prototype and an instance of an unnamed
 * class all get 'IntegrationEvent'.
 */
export function eventTypeName(event: object): string {
  const name = (event.constructor as { name?: string } | undefined)?.name;
  return name && name !== 'Object' ? name : 'IntegrationEvent';
}
