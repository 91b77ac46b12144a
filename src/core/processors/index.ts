import { cleanInbox } from './clean-inbox';
import { PROCESSOR_NAMES, type ProcessorContext, type ProcessorName } from './context';
import { deleteLocalQueueExpired } from './delete-local-queue-expired';
import { deletePublishedExpired } from './delete-published-expired';
import { Pass, reportFailure, ProcessorError } from './pass';
import { RetryByDatabase } from './retry-by-database';
import { retryByLocalQueue } from './retry-by-local-queue';
import { scheduleEvery, type Schedule } from './scheduler';

export type { ProcessorContext, ProcessorName } from './context';
export { PROCESSOR_NAMES } from './context';
export { ProcessorError } from './pass';
export { cronExpressionFor, type Schedule } from './scheduler';

/**
 * The background passes, scheduled by `start()` on node-cron (see `cronExpressionFor` for how an
 * interval in seconds maps to an expression; periods cron cannot express run on a timer):
 *
 * | pass                       | every (seconds)                    |
 * |----------------------------|------------------------------------|
 * | retry-by-local-queue       | `localFailedRetryInterval`         |
 * | retry-by-database          | `failedRetryInterval`              |
 * | delete-published-expired   | `cleaningExpireInterval`           |
 * | delete-local-queue-expired | `cleaningLocalQueueExpireInterval` |
 * | clean-inbox                | `cleaningExpireInterval`           |
 *
 * Each pass can also be run directly (tests, scripts, an admin endpoint). A pass never overlaps
 * itself: a tick or a call that comes while it runs joins the running pass. Passes never throw:
 * a failure is logged with its context, emitted as `error`, and the pass counts 0.
 */
export interface Processors {
  /** Schedules every pass. Idempotent. */
  start(): void;
  /**
   * Cancels the schedules (no timer or cron task is left), waits for running passes (a draining
   * pass stops after its current batch) and settles the rows the database retry still holds.
   * Idempotent; `start()` works again afterwards.
   */
  stop(): Promise<void>;
  readonly running: boolean;
  /** The schedules while started (empty when stopped). */
  readonly schedules: readonly Schedule[];
  /** Runs one pass by name (or joins the one running). Resolves with the pass's count. */
  run(name: ProcessorName): Promise<number>;
  /** Each pass the outbox schedules, with when it last ran (for health checks). */
  status(): ProcessorStatus[];
  /** When start() last scheduled the passes (epoch ms), or null while stopped. */
  readonly startedAt: number | null;
}

/** One background pass as a health check reports it. Times are epoch ms on this process's clock. */
export interface ProcessorStatus {
  name: ProcessorName;
  everySeconds: number;
  /** A run is in progress. */
  busy: boolean;
  lastStart: number | null;
  lastEnd: number | null;
  /** Why the last run failed, or null when it succeeded (or none ran yet). */
  lastError: string | null;
}

export function createProcessors(ctx: ProcessorContext): Processors {
  return new BackgroundProcessors(ctx);
}

class BackgroundProcessors implements Processors {
  private readonly passes: Record<ProcessorName, Pass>;
  private readonly retry: RetryByDatabase;
  private active: Schedule[] = [];
  private started = false;
  private startTime: number | null = null;
  private stopping: Promise<void> | null = null;
  /** True while stop() runs: draining passes end after their current batch. */
  private halting = false;

  constructor(private readonly ctx: ProcessorContext) {
    const halted = () => this.halting;
    const t = ctx.tuning;
    this.retry = new RetryByDatabase(ctx, halted);
    const pass = (name: ProcessorName, body: () => Promise<number>, context: Record<string, unknown>) =>
      new Pass(name, body, ctx, () => context);
    this.passes = {
      'retry-by-local-queue': pass('retry-by-local-queue', () => retryByLocalQueue(ctx), { intervalSeconds: t.localFailedRetryInterval }),
      'retry-by-database': pass('retry-by-database', () => this.retry.pass(), { intervalSeconds: t.failedRetryInterval, batchSize: t.retryBatchSize }),
      'delete-published-expired': pass('delete-published-expired', () => deletePublishedExpired(ctx, halted), {
        intervalSeconds: t.cleaningExpireInterval,
        batchSize: t.deleteBatchCount,
      }),
      'delete-local-queue-expired': pass('delete-local-queue-expired', () => deleteLocalQueueExpired(ctx), { intervalSeconds: t.cleaningLocalQueueExpireInterval }),
      'clean-inbox': pass('clean-inbox', () => cleanInbox(ctx, halted), { intervalSeconds: t.cleaningExpireInterval, batchSize: t.deleteBatchCount }),
    };
  }

  private intervalOf(name: ProcessorName): number {
    const t = this.ctx.tuning;
    switch (name) {
      case 'retry-by-local-queue':
        return t.localFailedRetryInterval;
      case 'retry-by-database':
        return t.failedRetryInterval;
      case 'delete-published-expired':
      case 'clean-inbox':
        return t.cleaningExpireInterval;
      case 'delete-local-queue-expired':
        return t.cleaningLocalQueueExpireInterval;
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.halting = false;
    this.startTime = Date.now();
    for (const name of this.scheduled()) {
      const p = this.passes[name];
      this.active.push(scheduleEvery(name, this.intervalOf(name), () => this.tick(p), this.ctx.logger));
    }
  }

  /** The passes start() schedules: all but the inbox cleanup when there is no inbox. */
  private scheduled(): ProcessorName[] {
    return PROCESSOR_NAMES.filter((name) => name !== 'clean-inbox' || this.ctx.inbox);
  }

  status(): ProcessorStatus[] {
    return this.scheduled().map((name) => {
      const p = this.passes[name];
      return { name, everySeconds: this.intervalOf(name), busy: p.busy, lastStart: p.lastStart, lastEnd: p.lastEnd, lastError: p.lastError };
    });
  }

  get startedAt(): number | null {
    return this.startTime;
  }

  private tick(p: Pass): void {
    if (p.busy) {
      this.ctx.logger.debug('pass still running; tick skipped', { processor: p.name });
      return;
    }
    void p.run();
  }

  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = this.doStop().finally(() => (this.stopping = null));
    }
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.started = false;
    this.startTime = null;
    this.halting = true;
    const schedules = this.active;
    this.active = [];
    for (const s of schedules) s.cancel();
    try {
      await Promise.all(Object.values(this.passes).map((p) => p.idle()));
      await this.retry.settle();
    } catch (err) {
      // idle() and settle() do not throw; this is a last guard for stop()'s callers.
      reportFailure(this.ctx, new ProcessorError('retry-by-database', 'stop failed', err));
    } finally {
      this.halting = false;
    }
  }

  get running(): boolean {
    return this.started;
  }

  get schedules(): readonly Schedule[] {
    return this.active;
  }

  run(name: ProcessorName): Promise<number> {
    const p = this.passes[name];
    if (!p) return Promise.reject(new TypeError(`unknown processor '${String(name)}'; one of ${PROCESSOR_NAMES.join(', ')}`));
    return p.run();
  }
}
