import { AsyncLocalStorage } from 'node:async_hooks';
import { UnitOfWorkError } from '../errors';
import type { OutboxStore, StoreTransaction } from '../ports/outbox-store';
import type { OutboxMessage } from '../ports/publisher';
import type { TransactionPort } from '../ports/transactions';
import type { Clock } from './clock';
import type { Dispatcher } from './dispatcher';

export interface UnitOfWorkDeps {
  store: OutboxStore;
  transactions: TransactionPort;
  dispatcher: Dispatcher;
  clock: Clock;
  owner: string;
  leaseMs: number;
}

const current = new AsyncLocalStorage<UnitOfWork>();

/** The unit of work of the current async context (a request inside the middleware), if any. */
export function currentUnitOfWork(): UnitOfWork | undefined {
  return current.getStore();
}

/**
 * Runs `fn` outside any unit of work and with no ambient transaction: what it writes, and the
 * events it publishes, go in transactions of their own.
 */
export function outsideUnitOfWork<T>(transactions: TransactionPort, fn: () => T): T {
  return current.run(undefined as unknown as UnitOfWork, () => transactions.detached(fn));
}

/**
 * One database transaction plus the integration events published in it. Events are buffered
 * (no I/O) and written in one multi-row INSERT just before COMMIT; they are dispatched only once
 * COMMIT succeeded, and discarded on rollback.
 */
export class UnitOfWork {
  private readonly buffer: OutboxMessage[] = [];
  private status: 'open' | 'completing' | 'committed' | 'rolled-back' = 'open';
  private rollbackReason: unknown;

  constructor(
    readonly transaction: StoreTransaction,
    private readonly deps: UnitOfWorkDeps,
    /** Trace context of the request, passed on to its events. */
    readonly trace: { traceparent?: string; tracestate?: string } = {},
    /**
     * True when the transaction is someone else's (a delivery's, or one the application opened):
     * completing writes the events in it, and its owner commits or rolls it back.
     */
    private readonly joined = false,
  ) {}

  get isOpen(): boolean {
    return this.status === 'open';
  }

  get state(): 'open' | 'completing' | 'committed' | 'rolled-back' {
    return this.status;
  }

  /** Events buffered so far (not yet written). */
  get pending(): readonly OutboxMessage[] {
    return this.buffer;
  }

  /**
   * Buffers an event for the commit. A unit of work that is completing or completed takes no more
   * events: its transaction is committed (or being committed), so the event could not be written
   * with it.
   */
  add(message: OutboxMessage): void {
    if (this.status !== 'open') {
      throw new UnitOfWorkError(
        'publish',
        new Error(
          `the unit of work is already ${this.status === 'completing' ? 'committing' : this.status}, so event ${message.id} cannot join it. ` +
            'Publish before the response is sent, or publish work done after the response from outbox.runInUnitOfWork()',
        ),
      );
    }
    this.buffer.push(message);
  }

  /** Makes the coming completion roll back whatever the response says. */
  markRollbackOnly(reason?: unknown): void {
    if (this.rollbackReason === undefined) this.rollbackReason = reason ?? new Error('marked rollback-only');
  }

  get rollbackOnly(): boolean {
    return this.rollbackReason !== undefined;
  }

  /** Runs `fn` with this unit of work (and its transaction) as the ambient ones. */
  run<T>(fn: () => T): T {
    return current.run(this, () => this.deps.transactions.bind(this.transaction, fn));
  }

  /**
   * Writes the buffered events and commits. Throws UnitOfWorkError when anything fails (after
   * rolling back). Once committed, the events are dispatched in the background.
   */
  async commit(): Promise<void> {
    if (this.status !== 'open') throw new UnitOfWorkError('commit', new Error(`the unit of work is already ${this.status}`));
    if (this.rollbackOnly) {
      await this.rollback();
      throw new UnitOfWorkError('commit', this.rollbackReason);
    }
    this.status = 'completing';
    const { store, transactions, dispatcher, clock, owner, leaseMs } = this.deps;
    const events = this.buffer.splice(0);
    if (this.joined) {
      if (events.length > 0) {
        const now = clock.now();
        await store.insert(events, this.transaction, owner, now + leaseMs, now);
        transactions.afterCommit(this.transaction, () => dispatcher.dispatchWhenStored(events));
      }
      this.status = 'committed';
      return;
    }
    try {
      const now = clock.now();
      if (events.length > 0) await store.insert(events, this.transaction, owner, now + leaseMs, now);
    } catch (err) {
      await this.abort();
      throw new UnitOfWorkError('flush', err);
    }
    try {
      await transactions.commit(this.transaction);
    } catch (err) {
      await this.abort();
      // A connection lost during COMMIT (killed, network) leaves the outcome unknown: the server
      // may have committed before it went. The events' rows tell, and a committed unit of work
      // must not be reported as failed (the client would retry what is already done).
      if (!(await committedAnyway(store, events))) throw new UnitOfWorkError('commit', err);
    }
    this.status = 'committed';
    dispatcher.dispatch(events);
  }

  /** Rolls back and discards the buffered events. Safe to call more than once. */
  async rollback(): Promise<void> {
    if (this.status === 'committed' || this.status === 'rolled-back') return;
    this.buffer.length = 0;
    await this.abort();
  }

  private async abort(): Promise<void> {
    this.status = 'rolled-back';
    if (this.joined) return;
    await this.deps.transactions.rollback(this.transaction).catch(() => {});
  }
}

/**
 * Whether a COMMIT that reported an error did commit: its first event's row is visible. A few
 * tries, since the connection the check gets may have died with the first one. False when unknown.
 */
async function committedAnyway(store: OutboxStore, events: readonly OutboxMessage[]): Promise<boolean> {
  if (events.length === 0) return false;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return (await store.find([events[0]!.id])).length > 0;
    } catch {
      // The pool drops a dead connection when a query on it fails; the next try gets another.
    }
  }
  return false;
}

/** Opens a unit of work through the transaction port. */
export async function beginUnitOfWork(deps: UnitOfWorkDeps, trace?: { traceparent?: string; tracestate?: string }): Promise<UnitOfWork> {
  let tx: StoreTransaction;
  try {
    tx = await deps.transactions.begin();
  } catch (err) {
    throw new UnitOfWorkError('begin', err);
  }
  return new UnitOfWork(tx, deps, trace);
}
