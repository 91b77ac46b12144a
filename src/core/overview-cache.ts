import type { OutboxOverview } from '../ports/outbox-store';

/**
 * The outbox's overview, read at most once per `maxAgeMs`: metric scrapes and health probes
 * share one read, however often they come. Callers that come while a read runs wait for it; a
 * failed read is not kept (the next caller tries again).
 */
export class OverviewCache {
  private last: { at: number; overview: OutboxOverview } | undefined;
  private reading: Promise<OutboxOverview> | null = null;

  constructor(
    private readonly read: () => Promise<OutboxOverview>,
    private readonly maxAgeMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(): Promise<OutboxOverview> {
    if (this.last && this.now() - this.last.at < this.maxAgeMs) return Promise.resolve(this.last.overview);
    if (!this.reading) {
      this.reading = this.read()
        .then((overview) => {
          this.last = { at: this.now(), overview };
          return overview;
        })
        .finally(() => (this.reading = null));
    }
    return this.reading;
  }
}
