import { EventEmitter } from 'node:events';

/** What the outbox reports, for metrics, dashboards and tests. Subscribe with `outbox.on(name, fn)`. */
export interface OutboxEventMap {
  /** Rows were published and marked. `source`: the post-commit dispatch, the local queue or the database retry. */
  published: [{ ids: string[]; source: 'dispatch' | 'local-retry' | 'retry' }];
  /** One publish attempt failed. */
  failed: [{ id: string; topic: string; attempt: number; error: Error }];
  /** A failed row will be tried again at `nextAttemptTime` (epoch ms) by the database retry. */
  retryScheduled: [{ id: string; topic: string; attempt: number; nextAttemptTime: number }];
  /** A row used up its attempts (or failed permanently): it stays, visible, until republished. */
  terminalFailure: [{ id: string; topic: string; attempt: number; error: Error }];
  /** A cleanup pass deleted rows. */
  cleaned: [{ published: number; inbox: number; localQueue: number }];
  /**
   * Something came after a request's answer and was left without effect (the answer stands): an
   * error passed on to Express while the answer waited for its COMMIT (`what: 'error'`; a later
   * one Express handles, and logs, as it would without the outbox), or a later `write()` /
   * `end()` (a second `res.json()`). Each is a bug in a handler.
   */
  afterAnswer: [{ method: string; url: string; what: 'error' | 'write' | 'end' }];
  /**
   * The subscription router skipped the missing sequences `from`..`to` of an ordering key: they
   * did not arrive within the topic's `orderingGapTimeout`.
   */
  orderingGap: [{ consumer: string; key: string; from: number; to: number }];
  /** A keyed event arrived after its sequence was skipped: answered DROP without running its handler. */
  orderingLate: [{ consumer: string; key: string; sequence: number; id: string }];
  /** A background pass failed; it goes on at its next run. */
  error: [Error & { processor?: string }];
}

export type OutboxEventName = keyof OutboxEventMap;

/** EventEmitter with the outbox's event names and payloads. */
export class OutboxEmitter extends EventEmitter {
  override on<K extends OutboxEventName>(name: K, listener: (...args: OutboxEventMap[K]) => void): this {
    return super.on(name, listener as (...args: unknown[]) => void);
  }
  override once<K extends OutboxEventName>(name: K, listener: (...args: OutboxEventMap[K]) => void): this {
    return super.once(name, listener as (...args: unknown[]) => void);
  }
  override off<K extends OutboxEventName>(name: K, listener: (...args: OutboxEventMap[K]) => void): this {
    return super.off(name, listener as (...args: unknown[]) => void);
  }
  override emit<K extends OutboxEventName>(name: K, ...args: OutboxEventMap[K]): boolean {
    // An 'error' nobody listens to must not crash the process: the logger already has it.
    if (name === 'error' && this.listenerCount('error') === 0) return false;
    return super.emit(name, ...args);
  }
}
