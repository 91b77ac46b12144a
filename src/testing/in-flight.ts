/**
 * Work tracking for `idle()` and `stop()`: every publish, delivery, pending bulk batch and
 * scheduled retry holds a token until it is finished, and every wait is abortable so that
 * stop() never waits for a retry interval or a slowed broker.
 */

export class InFlight {
  private count = 0;
  private waiters: Array<() => void> = [];

  /** Takes a token; call the returned function once the work is done (extra calls are ignored). */
  enter(): () => void {
    this.count++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count--;
      if (this.count === 0) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const wake of waiters) wake();
      }
    };
  }

  /** Resolves once no token is held. */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Runs `work` holding a token; `work` must not throw (errors are its own to report). */
  track(work: () => Promise<void>): void {
    const release = this.enter();
    void work().finally(release);
  }
}

/**
 * Waits `ms` milliseconds unless `signal` aborts first. Resolves true when the time elapsed,
 * false when aborted; never rejects.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
