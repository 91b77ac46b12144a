/**
 * Coalesces "mark Published" writes: ids added while a write is running go out together in the
 * next one, so N concurrent requests cost a handful of UPDATEs, not N extra commits.
 */
export class MarkBatcher {
  private pending: string[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly write: (ids: string[]) => Promise<void>,
    private readonly maxBatch: number,
  ) {}

  /** Resolves once the ids are written (or rejects with the write's error). */
  add(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    this.pending.push(...ids);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.running) this.running = this.loop();
    return done;
  }

  private async loop(): Promise<void> {
    // Let the other completions of this tick join the first write.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const ids = this.pending;
      const waiters = this.waiters;
      this.pending = [];
      this.waiters = [];
      try {
        for (let i = 0; i < ids.length; i += this.maxBatch) await this.write(ids.slice(i, i + this.maxBatch));
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.running = null;
  }

  /** Waits until nothing is pending. */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }
}
