import { EventValidationError } from '../errors';
import type { OutboxStore } from '../ports/outbox-store';
import type { TransactionPort } from '../ports/transactions';
import type { Clock } from './clock';
import type { Dispatcher } from './dispatcher';
import type { ResolvedTuning } from './options';
import { toOutboxMessage, type PublishOptions } from './serialize';
import { withCreateSpans } from './telemetry/spans';
import { currentUnitOfWork } from './unit-of-work';

export interface BusDeps {
  store: OutboxStore;
  transactions: TransactionPort;
  dispatcher: Dispatcher;
  tuning: ResolvedTuning;
  clock: Clock;
  owner: string;
}

/**
 * Publishes integration events through the outbox. An event is never published without its row,
 * and it joins the innermost transaction in force:
 *
 * - a transaction passed as `{ transaction }`, or the ambient one of a managed Sequelize
 *   transaction opened inside the request: written in it at once, dispatched after it commits
 *   (and never when it rolls back);
 * - otherwise the unit of work (the middleware's request, or `outbox.runInUnitOfWork`): buffered
 *   and written with its commit. Once that unit of work is committing or committed, publish()
 *   throws UnitOfWorkError (phase 'publish');
 * - otherwise a transaction of its own, then dispatched.
 *
 * ```ts
 * await outbox.bus.publish(new RegisterUserEvent(account, mobile));
 * ```
 */
export class IntegrationEventBus {
  constructor(private readonly deps: BusDeps) {}

  async publish(event: object, options: PublishOptions = {}): Promise<void> {
    await this.publishAll([event], options);
  }

  /** Publishes several events as one write. All are checked before anything is written. */
  async publishAll(events: readonly object[], options: PublishOptions = {}): Promise<void> {
    const { store, transactions, dispatcher, tuning, clock, owner } = this.deps;
    const uow = currentUnitOfWork();
    const now = clock.now();
    const defaults = { pubsubName: tuning.pubsubName, maxEventBytes: tuning.maxEventBytes, now };
    const messages = withCreateSpans(events.map((e) => toOutboxMessage(e, defaults, options, uow?.trace)), options.traceparent !== undefined);
    if (messages.length === 0) return;
    if (!store.markPublishedInOrder) {
      const keyed = messages.find((m) => m.orderingKey != null);
      if (keyed) throw new EventValidationError('this outbox store keeps no ordering keys (it has no markPublishedInOrder)', { eventId: keyed.id, topic: keyed.topic });
    }
    const tx = options.transaction ?? transactions.current();
    if (uow && (tx === undefined || tx === uow.transaction)) {
      for (const m of messages) uow.add(m);
      return;
    }
    const leaseUntil = now + tuning.leaseTime * 1000;
    if (tx) {
      await store.insert(messages, tx, owner, leaseUntil, now);
      transactions.afterCommit(tx, () => dispatcher.dispatchWhenStored(messages));
      return;
    }
    await store.insert(messages, null, owner, leaseUntil, now);
    dispatcher.dispatch(messages);
  }
}
