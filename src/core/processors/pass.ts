import { OutboxError } from '../../errors';
import type { OutboxEventMap, OutboxEventName } from '../events';
import { errorMessage } from '../logger';
import type { ProcessorContext, ProcessorName } from './context';

/**
 * A background pass failed (or part of it did). Carries the processor's name and what it was
 * doing; the original error is the `cause`. Reported through the logger and the `error` event,
 * never thrown at the application.
 */
export class ProcessorError extends OutboxError {
  readonly processor: ProcessorName;
  readonly context: Readonly<Record<string, unknown>>;
  constructor(processor: ProcessorName, what: string, cause: unknown, context: Record<string, unknown> = {}) {
    super(`${processor}: ${what}: ${errorMessage(cause)}`, { cause });
    this.name = 'ProcessorError';
    this.processor = processor;
    this.context = context;
  }
}

/** Logs a failure with its context and emits it as `error`; never throws. */
export function reportFailure(ctx: Pick<ProcessorContext, 'logger' | 'events'>, error: ProcessorError, extra: Record<string, unknown> = {}): void {
  try {
    ctx.logger.error(error.message, { processor: error.processor, ...extra, ...error.context });
    ctx.events.emit('error', error);
  } catch {
    // A logger or an `error` listener that throws must not stop a background loop.
  }
}

/** Emits to the application's listeners; one that throws is logged and does not break the pass. */
export function safeEmit<K extends OutboxEventName>(ctx: Pick<ProcessorContext, 'logger' | 'events'>, name: K, ...args: OutboxEventMap[K]): void {
  try {
    ctx.events.emit(name, ...args);
  } catch (err) {
    ctx.logger.error('an outbox event listener threw', { event: name, error: errorMessage(err) });
  }
}

/**
 * One kind of background pass. `run()` starts the pass, or joins the one already running, so a
 * pass never overlaps itself whoever triggers it (a cron tick, a timer, a test, stop()). It never
 * rejects: a failure is reported with the pass's context and the pass counts 0; the next tick
 * tries again.
 */
export class Pass {
  private current: Promise<number> | null = null;
  /** When the last run started and ended (epoch ms, this process's clock), and how it failed. */
  lastStart: number | null = null;
  lastEnd: number | null = null;
  lastError: string | null = null;

  constructor(
    readonly name: ProcessorName,
    private readonly body: () => Promise<number>,
    private readonly ctx: Pick<ProcessorContext, 'logger' | 'events'>,
    /** Static facts for error reports (batch size, interval...). */
    private readonly context: () => Record<string, unknown>,
  ) {}

  get busy(): boolean {
    return this.current !== null;
  }

  run(): Promise<number> {
    if (this.current) return this.current;
    this.lastStart = Date.now();
    // Started on a microtask so that a body failing synchronously still goes through the catch
    // below, and `current` is set before anything can settle.
    const pass = Promise.resolve()
      .then(() => this.body())
      .then((count) => {
        this.lastError = null;
        return count;
      })
      .catch((err: unknown) => {
        this.lastError = errorMessage(err);
        if (err instanceof ProcessorError) reportFailure(this.ctx, err, this.context());
        else reportFailure(this.ctx, new ProcessorError(this.name, 'pass failed', err, this.context()));
        return 0;
      });
    this.current = pass;
    // Registered before the caller's await, so `busy` is false again when the caller resumes.
    void pass.finally(() => {
      this.lastEnd = Date.now();
      if (this.current === pass) this.current = null;
    });
    return pass;
  }

  /** Resolves once no run of this pass is in progress. */
  async idle(): Promise<void> {
    while (this.current) await this.current;
  }
}
