/** Time source of the core and processors; tests inject one to move time without sleeping. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Re-measures the clock against its reference, where it has one. Never rejects. */
  sync?(): Promise<void>;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * The database's clock, read without a query per call: the process clock plus an offset measured
 * against the database. Leases and due times are compared in the database, so every replica
 * computing them on this timeline agrees on who may take a row whatever its own clock says.
 */
export class DatabaseClock implements Clock {
  private offset = 0;
  private syncing: Promise<void> | null = null;

  constructor(
    private readonly databaseTime: () => Promise<number>,
    private readonly local: () => number = () => Date.now(),
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  now(): number {
    return this.local() + this.offset;
  }

  sync(): Promise<void> {
    if (!this.syncing) this.syncing = this.measure().finally(() => (this.syncing = null));
    return this.syncing;
  }

  private async measure(): Promise<void> {
    try {
      const before = this.local();
      const db = await this.databaseTime();
      const after = this.local();
      if (!Number.isFinite(db)) return;
      const offset = db - (before + after) / 2;
      // Within half the round trip (plus the millisecond the database rounds to) the two clocks
      // cannot be told apart: call them equal rather than move by noise.
      this.offset = Math.abs(offset) <= (after - before) / 2 + 1 ? 0 : Math.round(offset);
    } catch (err) {
      // Keeps the last offset; the query that failed here fails the caller's next step too.
      this.onError(err);
    }
  }
}
