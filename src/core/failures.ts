import { PublishError } from '../errors';
import type { FailedMark, OutboxStore } from '../ports/outbox-store';
import type { OutboxMessage } from '../ports/publisher';
import type { Clock } from './clock';
import type { OutboxEmitter } from './events';
import { errorMessage, type Logger } from './logger';
import type { ResolvedTuning } from './options';

/**
 * The failure rules, in one place: which publish failures are permanent, how long a failed row
 * waits before its next attempt, and when it is a terminal failure. Both the post-commit
 * dispatcher and the database retry record their failures through `Failures.record`.
 */

/** A failure that retrying cannot fix (the broker refused the request itself). */
export function isPermanent(error: unknown): boolean {
  return error instanceof PublishError && error.permanent;
}

/**
 * Delay before attempt number `attempt + 1` of a row, milliseconds, drawn uniformly from
 * [max(floor, e / 2), max(e, min(ceiling, 2 * floor))] where e = min(ceiling, floor * 2^(attempt-1)),
 * floor = minimumRetryInterval and ceiling = maximumRetryInterval.
 *
 * From attempt 2 on this is "equal jitter" (half of the exponential delay fixed, half random).
 * The first retry would have e = floor and nothing left to spread, so its range is
 * [floor, 2 * floor] instead: rows that failed together (a sidecar outage) do not come back
 * together. The floor stays the shortest wait and the ceiling the longest; when they are equal
 * there is no room for jitter.
 */
export function retryDelayMs(attempt: number, tuning: Pick<ResolvedTuning, 'minimumRetryInterval' | 'maximumRetryInterval'>, random: () => number = Math.random): number {
  const floor = tuning.minimumRetryInterval * 1000;
  const ceiling = tuning.maximumRetryInterval * 1000;
  const exp = Math.min(ceiling, floor * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  const low = Math.max(floor, exp / 2);
  const high = Math.max(exp, Math.min(ceiling, 2 * floor));
  return Math.round(Math.min(ceiling, Math.max(floor, low + random() * (high - low))));
}

export interface FailuresDeps {
  store: OutboxStore;
  tuning: ResolvedTuning;
  clock: Clock;
  logger: Logger;
  events: OutboxEmitter;
  /** Lock owner of the rows this process inserts and claims. */
  owner: string;
  random?: () => number;
}

/** A failed publish, with the attempt it was (1 for the committer's own). */
export interface FailedPublish {
  message: OutboxMessage;
  error: Error;
  attempt: number;
}

export interface PlannedFailure extends FailedPublish {
  /** The next attempt's time (epoch ms), or null: terminal. */
  nextAttemptTime: number | null;
}

/** The store's view of a planned failure. */
export function toFailedMark(m: PlannedFailure): FailedMark {
  return { id: m.message.id, error: errorMessage(m.error), nextAttemptTime: m.nextAttemptTime };
}

export class Failures {
  constructor(private readonly deps: FailuresDeps) {}

  /**
   * Records failures in the database: a next attempt time from the backoff, or terminal when the
   * attempts are used up or the failure is permanent; then reports each (`retryScheduled` or
   * `terminalFailure`). Never throws: a failed write is logged, and the rows come back when their
   * lease runs out.
   */
  async record(items: readonly FailedPublish[], owner = this.deps.owner): Promise<void> {
    const { clock, store, logger } = this.deps;
    const now = clock.now();
    const marks = this.plan(items, now);
    try {
      await store.markFailed(marks.map(toFailedMark), owner, now);
    } catch (err) {
      logger.error('could not record failed publishes', { count: items.length, error: errorMessage(err) });
      return;
    }
    this.report(marks);
  }

  /** Decides each failure's fate at `now`: a next attempt after a backoff, or terminal. */
  plan(items: readonly FailedPublish[], now: number): PlannedFailure[] {
    const { tuning } = this.deps;
    return items.map(({ message, error, attempt }) => {
      const terminal = isPermanent(error) || attempt > tuning.maxRetryTimes;
      const nextAttemptTime = terminal ? null : now + retryDelayMs(attempt, tuning, this.deps.random);
      return { message, error, attempt, nextAttemptTime };
    });
  }

  /** Once the marks are written: the terminalFailure and retryScheduled events (and the terminal warning). */
  report(marks: readonly PlannedFailure[]): void {
    const { events, logger } = this.deps;
    for (const m of marks) {
      if (m.nextAttemptTime === null) {
        logger.warn('event failed for good; republish it by hand once the cause is fixed', { id: m.message.id, topic: m.message.topic, error: errorMessage(m.error) });
        events.emit('terminalFailure', { id: m.message.id, topic: m.message.topic, attempt: m.attempt, error: m.error });
      } else {
        events.emit('retryScheduled', { id: m.message.id, topic: m.message.topic, attempt: m.attempt, nextAttemptTime: m.nextAttemptTime });
      }
    }
  }
}
