import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { InboxStore } from '../ports/inbox-store';
import type { OutboxOverview, OutboxStats, OutboxStore, RepublishFilter } from '../ports/outbox-store';
import type { Publisher } from '../ports/publisher';
import type { TransactionPort } from '../ports/transactions';
import { IntegrationEventBus } from './bus';
import { DatabaseClock, systemClock, type Clock } from './clock';
import { Dispatcher } from './dispatcher';
import { Failures } from './failures';
import { LocalRetryQueue } from './local-retry-queue';
import { OutboxEmitter } from './events';
import { consoleLogger, type Logger } from './logger';
import { resolveInstanceId, resolveTuning, type OutboxTuning, type ResolvedTuning } from './options';
import { checkHealth, resolveHealthOptions, type HealthOptions, type OutboxHealth } from './health';
import { OverviewCache } from './overview-cache';
import { createProcessors, type ProcessorName, type Processors } from './processors';
import { registerOverviewGauges } from './telemetry/gauges';
import { beginUnitOfWork, currentUnitOfWork, UnitOfWork, type UnitOfWorkDeps } from './unit-of-work';

export interface EngineOptions extends OutboxTuning {
  /**
   * Time source; tests inject one. Default: the database's clock (the process clock plus an offset
   * measured against the store at migrate(), start() and each database retry pass).
   */
  clock?: Clock;
  /** Where the library reports. Default: warnings and errors to the console. */
  logger?: Logger;
  /**
   * This process's name in lock columns, at most 80 characters (lock_owner holds 100, and the claim
   * appends `#<number>` to it). Default: `<hostname>:<pid>:<random>`.
   */
  instanceId?: string;
  /** Random source of the backoff jitter; tests inject one. */
  random?: () => number;
}

export interface EnginePorts {
  store: OutboxStore;
  inbox?: InboxStore;
  publisher: Publisher;
  transactions: TransactionPort;
}

/**
 * The outbox's core, on ports only: the bus, units of work, the post-commit dispatcher and the
 * background processors, with the events they report.
 */
export class OutboxEngine extends OutboxEmitter {
  readonly tuning: ResolvedTuning;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly owner: string;
  readonly bus: IntegrationEventBus;
  readonly inbox: InboxStore | undefined;
  readonly publisher: Publisher;
  /** The transactions the engine runs on (the subscription router runs its deliveries through them too). */
  readonly transactions: TransactionPort;
  /** The outbox store the engine runs on (the admin router reads its pages through it). */
  readonly store: OutboxStore;
  private readonly dispatcher: Dispatcher;
  private readonly processors: Processors;
  private readonly uowDeps: UnitOfWorkDeps;
  private readonly overviewCache: OverviewCache;
  private readonly unregisterGauges: () => void;
  private closed = false;

  constructor(ports: EnginePorts, options: EngineOptions = {}) {
    super();
    this.tuning = resolveTuning(options, ports.publisher.pubsubName);
    this.logger = options.logger ?? consoleLogger;
    const storeTime = ports.store.currentTime?.bind(ports.store);
    this.clock = options.clock ?? (storeTime ? new DatabaseClock(storeTime, undefined, (err) => this.logger.warn('could not read the database clock', { error: String(err) })) : systemClock);
    this.owner = resolveInstanceId(options.instanceId, () => `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`);
    this.store = ports.store;
    this.inbox = ports.inbox;
    this.publisher = ports.publisher;
    this.transactions = ports.transactions;
    const deps = {
      store: ports.store,
      publisher: ports.publisher,
      tuning: this.tuning,
      clock: this.clock,
      logger: this.logger,
      events: this as OutboxEmitter,
      owner: this.owner,
      random: options.random,
    };
    const parts = { ...deps, localQueue: new LocalRetryQueue(), failures: new Failures(deps) };
    this.dispatcher = new Dispatcher(parts);
    this.bus = new IntegrationEventBus({
      store: ports.store,
      transactions: ports.transactions,
      dispatcher: this.dispatcher,
      tuning: this.tuning,
      clock: this.clock,
      owner: this.owner,
    });
    this.uowDeps = {
      store: ports.store,
      transactions: ports.transactions,
      dispatcher: this.dispatcher,
      clock: this.clock,
      owner: this.owner,
      leaseMs: this.tuning.leaseTime * 1000,
    };
    this.processors = createProcessors({ ...parts, inbox: ports.inbox, dispatcher: this.dispatcher });
    this.overviewCache = new OverviewCache(() => this.overview(), this.tuning.overviewCacheTime * 1000);
    this.unregisterGauges = registerOverviewGauges(
      () => this.overviewCache.get(),
      (err) => this.logger.warn('could not read the outbox overview for the metric gauges', { error: String(err) }),
    );
  }

  /** Opens a unit of work (what the middleware does per request). */
  beginUnitOfWork(trace?: { traceparent?: string; tracestate?: string }): Promise<UnitOfWork> {
    return beginUnitOfWork(this.uowDeps, trace);
  }

  /**
   * Runs `fn` in a unit of work outside HTTP (a job, a script): commits when it resolves, rolls
   * back when it throws. Called inside an open unit of work (a request, or another
   * `runInUnitOfWork`), it joins that one: its writes and events commit with the outer unit of
   * work, and an error it throws marks the outer one rollback-only. Called inside a transaction
   * it does not own (a subscription handler's delivery, `sequelize.transaction(...)`), it joins
   * that transaction the same way: its events are written in it, and dispatched once it commits.
   *
   * ```ts
   * await outbox.runInUnitOfWork(async () => {
   *   await Order.create(order);                       // joins the transaction
   *   await outbox.bus.publish(new OrderPlaced(order.id));
   * });
   * ```
   */
  async runInUnitOfWork<T>(fn: (uow: UnitOfWork) => Promise<T> | T): Promise<T> {
    const outer = currentUnitOfWork();
    if (outer?.isOpen) {
      try {
        return await fn(outer);
      } catch (err) {
        outer.markRollbackOnly(err);
        throw err;
      }
    }
    const ambient = this.transactions.current();
    if (ambient !== undefined && ambient !== outer?.transaction) {
      const joined = new UnitOfWork(ambient, this.uowDeps, outer?.trace, true);
      const result = await joined.run(() => fn(joined));
      await joined.commit();
      return result;
    }
    const uow = await this.beginUnitOfWork();
    let result: T;
    try {
      result = await uow.run(() => fn(uow));
    } catch (err) {
      await uow.rollback();
      throw err;
    }
    await uow.commit();
    return result;
  }

  /** Starts the background processors (retry and cleanup). Idempotent. */
  start(): this {
    if (this.closed) throw new Error('dapr-outbox: the outbox is closed');
    this.processors.start();
    void this.clock.sync?.();
    return this;
  }

  /** Stops the processors, waits for running passes and releases the rows this process holds. Idempotent. */
  async stop(): Promise<void> {
    await this.processors.stop();
    await this.dispatcher.handOver();
    await this.dispatcher.releaseLocalQueue().catch((err) => this.logger.warn('could not release local-queue rows', { error: String(err) }));
  }

  get running(): boolean {
    return this.processors.running;
  }

  /**
   * Runs one background pass now (or joins the one running) and resolves with its count: rows
   * claimed by 'retry-by-database', rows or entries deleted by the cleanups. Never rejects for a
   * failed pass: that is logged and emitted as `error`, and counts 0.
   *
   * ```ts
   * await outbox.runPass('retry-by-database');
   * ```
   */
  runPass(name: ProcessorName): Promise<number> {
    return this.processors.run(name);
  }

  /** Makes terminal-failed rows due again: by event ids, or by a filter. Returns how many. */
  republish(target: readonly string[] | RepublishFilter): Promise<number> {
    const filter = Array.isArray(target) ? { ids: target as readonly string[] } : (target as RepublishFilter);
    return this.store.republish(filter, this.clock.now());
  }

  /** Row counts per state. */
  stats(): Promise<OutboxStats> {
    return this.store.stats();
  }

  /** The counts per state with the backlog, the age of its oldest row and the inbox size: a few cheap queries. */
  async overview(): Promise<OutboxOverview> {
    const [stats, oldest, inboxSize] = await Promise.all([
      this.store.stats(),
      this.store.oldestPendingTime ? this.store.oldestPendingTime() : null,
      this.inbox?.size ? this.inbox.size() : null,
    ]);
    return {
      ...stats,
      backlog: stats.notPublished + stats.inProgress + stats.publishedFailed,
      oldestPendingTime: oldest,
      oldestPendingAgeMs: oldest === null ? null : Math.max(0, this.clock.now() - oldest),
      inboxSize,
    };
  }

  /**
   * How the outbox is doing: whether the processors run and when each last ran, the backlog and
   * the age of its oldest row, terminal failures, and whether the sidecar answered its health
   * check; `healthy` with the `reasons` when a threshold is crossed (see HealthOptions). The
   * counts come from `overview()`, read at most once per `overviewCacheTime`. Never rejects.
   *
   * ```ts
   * const { healthy, reasons } = await outbox.health({ maxPendingAge: 600 });
   * ```
   */
  health(options?: HealthOptions): Promise<OutboxHealth> {
    const resolved = resolveHealthOptions(options);
    const publisher = this.publisher;
    return checkHealth(
      {
        overview: () => this.overviewCache.get(),
        running: this.processors.running,
        startedAt: this.processors.startedAt,
        passes: this.processors.status(),
        checkSidecar: publisher.checkHealth ? (timeoutMs) => publisher.checkHealth!(timeoutMs) : undefined,
      },
      resolved,
    );
  }

  /** Waits until every post-commit dispatch started so far has finished. */
  drain(): Promise<void> {
    return this.dispatcher.drain();
  }

  /** Stops everything and closes the publisher. The database connection stays the application's. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.stop();
    this.closed = true;
    this.unregisterGauges();
    await this.publisher.close?.();
  }
}
