import type { OutboxMessage, Publisher } from '../ports/publisher';
import { errorMessage } from './logger';
import { isPermanent, type FailedPublish, type Failures, type FailuresDeps } from './failures';
import type { LocalRetryQueue } from './local-retry-queue';
import { MarkBatcher } from './mark-batcher';
import { sendMessages, type SendOutcome } from './send';

export interface DispatcherDeps extends FailuresDeps {
  publisher: Publisher;
}

/** What the dispatcher works with: its dependencies, the local retry queue and the failure rules. */
export interface DispatcherParts extends DispatcherDeps {
  localQueue: LocalRetryQueue;
  failures: Failures;
}

/**
 * Publishes rows right after their transaction commits (no poll on the hot path), batches the
 * Published marks, and keeps a short in-memory retry queue for failures. Rows stay leased to this
 * process while it works on them; the database retry processor takes over what it gives up on,
 * and whatever a crash leaves behind once the lease runs out.
 */
export class Dispatcher {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly marks: MarkBatcher;
  private readonly localQueue: LocalRetryQueue;
  private localPass: Promise<void> | null = null;
  /** Committed messages waiting for the publish round in flight to end. */
  private waiting: OutboxMessage[] = [];
  private round: Promise<void> | null = null;
  /** While stopping: the next event of a key is given back to the relay, not published here. */
  private handingOver = false;

  constructor(private readonly deps: DispatcherParts) {
    this.localQueue = deps.localQueue;
    this.marks = new MarkBatcher((ids) => deps.store.markPublished(ids, deps.clock.now()), 1000);
  }

  /**
   * Starts publishing committed messages; returns at once. Errors never reach the caller.
   *
   * Publishing goes in rounds, one at a time: with no round in flight the messages go out at
   * once; messages committed while a round is in flight wait for it, then go out together in the
   * next round (in bulk calls per pubsub and topic, see sendMessages). At low load this adds no
   * delay; under load N requests cost a few publish calls instead of N. The Published marks of a
   * round are written while the next round publishes.
   */
  dispatch(messages: readonly OutboxMessage[]): void {
    if (messages.length === 0) return;
    // A keyed event waiting for an earlier one of its key goes out when that one is published.
    for (const m of messages) if (m.waiting !== true) this.waiting.push(m);
    if (this.waiting.length === 0) return;
    if (!this.round) {
      this.round = this.rounds();
      this.track(this.round);
    }
  }

  private async rounds(): Promise<void> {
    const { tuning, publisher } = this.deps;
    // A round takes what a few bulk calls carry; a larger backlog goes in the rounds after it.
    const cap = tuning.batchSize * 10;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.length <= cap ? this.waiting.splice(0) : this.waiting.splice(0, cap);
        const outcome = await sendMessages(publisher, batch, tuning);
        this.track(this.settle(outcome));
      }
    } finally {
      // In the same step as the last check of `waiting`: a dispatch after it starts a new round.
      this.round = null;
    }
  }

  /**
   * Dispatches messages written in a transaction the application ends itself, from its
   * after-commit hook, once their rows are seen. Sequelize runs after-commit hooks even when
   * COMMIT failed, and PostgreSQL answers the COMMIT of an aborted transaction with a silent
   * ROLLBACK: without the check, an event whose row was never kept would be published.
   */
  dispatchWhenStored(messages: readonly OutboxMessage[]): void {
    if (messages.length === 0) return;
    this.track(
      (async () => {
        // The rows were written together: one of them tells whether the transaction kept them.
        if ((await this.deps.store.find([messages[0]!.id])).length === 0) {
          this.deps.logger.warn('the transaction did not keep its events; nothing is published', { ids: messages.map((m) => m.id) });
          return;
        }
        this.dispatch(messages);
      })(),
    );
  }

  /** Waits for every dispatch and mark started so far. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await this.marks.drain();
    if (this.localPass) await this.localPass;
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err) => this.deps.logger.error('dispatch failed', { error: errorMessage(err) })).finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Marks a round's published messages and queues or records its failures. */
  private async settle(outcome: SendOutcome): Promise<void> {
    const { tuning } = this.deps;
    const later: Promise<void>[] = [];
    if (outcome.published.length > 0) later.push(this.markPublished(outcome.published, 'dispatch'));
    const giveUp: Array<{ message: OutboxMessage; error: Error }> = [];
    for (const { message, error } of outcome.failed) {
      this.deps.events.emit('failed', { id: message.id, topic: message.topic, attempt: 1, error });
      if (isPermanent(error) || tuning.localRetryTimes === 0) giveUp.push({ message, error });
      else this.localQueue.add(message, this.deps.clock.now() + tuning.leaseTime * 1000);
    }
    if (giveUp.length > 0) later.push(this.deps.failures.record(giveUp.map((f) => ({ ...f, attempt: 1 }))));
    await Promise.all(later);
  }

  private async markPublished(messages: readonly OutboxMessage[], source: 'dispatch' | 'local-retry'): Promise<void> {
    const keyed = messages.filter((m) => m.orderingKey != null);
    const ids = (keyed.length === 0 ? messages : messages.filter((m) => m.orderingKey == null)).map((m) => m.id);
    try {
      await Promise.all([ids.length > 0 ? this.marks.add(ids) : undefined, keyed.length > 0 ? this.publishedInOrder(keyed) : undefined]);
      this.deps.events.emit('published', { ids: messages.map((m) => m.id), source });
    } catch (err) {
      // The rows stay InProgress under this process's lease; once it runs out the retry processor
      // publishes them again (a duplicate at the transport, which the subscriber's inbox absorbs).
      this.deps.logger.error('could not mark published rows', { count: messages.length, error: errorMessage(err) });
    }
  }

  /**
   * Marks keyed events Published and moves their keys on: the next event of each key, leased to
   * this process by the store, is dispatched at once. Rejects when the write fails (the events
   * stay leased, and the retry processor publishes them again once the lease runs out).
   */
  async publishedInOrder(messages: readonly OutboxMessage[]): Promise<void> {
    const { store, clock, tuning, owner } = this.deps;
    const now = clock.now();
    const next = await store.markPublishedInOrder!(messages, owner, now + tuning.leaseTime * 1000, now);
    if (!this.handingOver) return this.dispatch(next);
    // Stopping: a key's backlog is not worked through here. The next event is due at once for
    // whichever relay comes first, with the attempt its lease counted taken back.
    if (next.length > 0) await store.release(next.map((m) => m.id), owner, clock.now(), { undoAttempt: true });
  }

  /**
   * Waits for every dispatch and mark started so far, as drain() does, but hands the next event
   * of each key back to the relay instead of publishing it (stop() uses it): a long key does not
   * hold up a shutdown.
   */
  async handOver(): Promise<void> {
    this.handingOver = true;
    try {
      await this.drain();
    } finally {
      this.handingOver = false;
    }
  }

  /**
   * One pass of the local-queue retry: tries every queued message again; those that used up
   * `localRetryTimes` go to the database retry with a backoff. Never overlaps itself.
   */
  retryLocalQueue(): Promise<void> {
    if (this.localPass) return this.localPass;
    this.localPass = this.localRetryPass().finally(() => (this.localPass = null));
    return this.localPass;
  }

  private async localRetryPass(): Promise<void> {
    const { tuning, clock, publisher, store, owner } = this.deps;
    const now = clock.now();
    const items = this.localQueue.take(now);
    if (items.length === 0) return;
    const leaseUntil = now + tuning.leaseTime * 1000;
    // A row another replica claimed (its clock ran ahead, or this process stalled) is its to publish now.
    const held = new Set(await store.extendLease(items.map((i) => i.message.id), owner, leaseUntil, now));
    for (const i of items) if (held.has(i.message.id)) i.leaseUntil = leaseUntil; else this.localQueue.remove(i.message.id);
    const mine = items.filter((i) => held.has(i.message.id));
    if (mine.length === 0) return;
    const outcome = await sendMessages(publisher, mine.map((i) => i.message), tuning);
    for (const m of outcome.published) this.localQueue.remove(m.id);
    const giveUp: FailedPublish[] = [];
    for (const { message, error } of outcome.failed) {
      const item = this.localQueue.get(message.id);
      if (!item) continue;
      item.retries += 1;
      this.deps.events.emit('failed', { id: message.id, topic: message.topic, attempt: 1, error });
      if (item.retries >= tuning.localRetryTimes || isPermanent(error)) {
        this.localQueue.remove(message.id);
        giveUp.push({ message, error, attempt: 1 });
      }
    }
    await Promise.all([
      outcome.published.length > 0 ? this.markPublished(outcome.published, 'local-retry') : undefined,
      giveUp.length > 0 ? this.deps.failures.record(giveUp) : undefined,
    ]);
  }

  /** Gives every row still in the local queue back to the database retry, due at once. */
  async releaseLocalQueue(): Promise<void> {
    const ids = this.localQueue.release();
    if (ids.length > 0) await this.deps.store.release(ids, this.deps.owner, this.deps.clock.now());
  }
}
