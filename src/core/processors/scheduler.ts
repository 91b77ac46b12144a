import { createTask, type Logger as CronLogger, type ScheduledTask } from 'node-cron';
import { errorMessage, type Logger } from '../logger';

/**
 * The node-cron expression (6 fields, seconds first) that fires every `seconds`, or null when no
 * cron expression has that period. Cron fields restart at every minute, hour and day, so `*\/N`
 * only keeps an even period when N divides the field's range: every 7 s would fire at :49, :56
 * and again at :00 (4 s later). Such periods (and fractions of a second) run on a plain timer.
 *
 * | seconds                          | expression        |
 * |----------------------------------|-------------------|
 * | 1                                | `* * * * * *`     |
 * | N dividing 60 (2, 3, 5, ... 30)  | `*\/N * * * * *`  |
 * | 60                               | `0 * * * * *`     |
 * | 60 M, M dividing 60              | `0 *\/M * * * *`  |
 * | 3600                             | `0 0 * * * *`     |
 * | 3600 H, H dividing 24            | `0 0 *\/H * * *`  |
 * | 86400                            | `0 0 0 * * *`     |
 * | anything else                    | null (a timer)    |
 */
export function cronExpressionFor(seconds: number): string | null {
  if (!Number.isInteger(seconds) || seconds <= 0) return null;
  if (seconds === 1) return '* * * * * *';
  if (seconds < 60) return 60 % seconds === 0 ? `*/${seconds} * * * * *` : null;
  if (seconds === 60) return '0 * * * * *';
  if (seconds < 3600) {
    const minutes = seconds / 60;
    return Number.isInteger(minutes) && 60 % minutes === 0 ? `0 */${minutes} * * * *` : null;
  }
  if (seconds === 3600) return '0 0 * * * *';
  if (seconds < 86400) {
    const hours = seconds / 3600;
    return Number.isInteger(hours) && 24 % hours === 0 ? `0 0 */${hours} * * *` : null;
  }
  return seconds === 86400 ? '0 0 0 * * *' : null;
}

/** A running schedule. */
export interface Schedule {
  readonly name: string;
  readonly everySeconds: number;
  /** The node-cron expression, or null when a timer runs it. */
  readonly cron: string | null;
  /** Stops it for good: no timer or cron task of it is left. Idempotent. */
  cancel(): void;
}

/**
 * Calls `tick` every `seconds`: on a node-cron task when the period has a cron expression
 * (`cronExpressionFor`), on a setInterval timer otherwise. `tick` must not throw and must not
 * overlap itself on its own (the Pass does both); node-cron's own overlap and missed-run
 * handling is therefore left off.
 */
export function scheduleEvery(name: string, seconds: number, tick: () => void, logger: Logger): Schedule {
  const expression = cronExpressionFor(seconds);
  if (expression === null) {
    let timer: NodeJS.Timeout | undefined = setInterval(tick, Math.max(1, Math.round(seconds * 1000)));
    return {
      name,
      everySeconds: seconds,
      cron: null,
      cancel() {
        if (timer) clearInterval(timer);
        timer = undefined;
      },
    };
  }
  let task: ScheduledTask | undefined = createTask(expression, () => tick(), {
    name: `dapr-outbox:${name}`,
    // A late tick is harmless here (the next one does the work); no console warnings about it.
    suppressMissedWarning: true,
    logger: cronLogger(logger),
  });
  void Promise.resolve(task.start()).catch((err: unknown) => logger.error('could not start a cron task', { processor: name, error: errorMessage(err) }));
  return {
    name,
    everySeconds: seconds,
    cron: expression,
    cancel() {
      // destroy() stops the task's timer and removes it from node-cron's registry.
      if (task) void Promise.resolve(task.destroy()).catch(() => {});
      task = undefined;
    },
  };
}

/** node-cron reports through our logger instead of the console. */
function cronLogger(logger: Logger): CronLogger {
  const text = (m: string | Error) => (m instanceof Error ? m.message : m);
  return {
    info: (m) => logger.debug(`node-cron: ${m}`),
    warn: (m) => logger.warn(`node-cron: ${m}`),
    error: (m, err) => logger.error(`node-cron: ${text(m)}`, err ? { error: err.message } : undefined),
    debug: (m) => logger.debug(`node-cron: ${text(m)}`),
  };
}
