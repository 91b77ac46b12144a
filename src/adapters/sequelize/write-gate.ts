import { AsyncLocalStorage } from 'node:async_hooks';
import type { Sequelize } from 'sequelize';
import { OutboxConfigError, UnitOfWorkError } from '../../errors';
import { currentTransaction } from './transaction-context';

/** How long a writer waits for the SQLite write gate by default, milliseconds. */
export const DEFAULT_WRITE_WAIT_MS = 10_000;

/** The gates the current async context holds (so that its own queries pass). */
const held = new AsyncLocalStorage<ReadonlySet<WriteGate>>();

/**
 * SQLite has one writer at a time, and Sequelize gives each transaction a connection of its own,
 * so two of our transactions at once would end in SQLITE_BUSY. Every write transaction this
 * library opens on SQLite therefore passes one gate per Sequelize instance, in arrival order.
 * Other dialects pass straight through.
 *
 * The gate never lets a caller wait for itself: a write from the context that holds the gate
 * (a request's unit of work calling `outbox.republish()`, say) fails at once (a bug to fix, so
 * status 500), and any other wait ends after `waitMs` with a UnitOfWorkError whose `status` is
 * 503 (the database is busy: try again).
 */
export class WriteGate {
  private tail: Promise<void> = Promise.resolve();
  /** The transaction holding the gate, when a transaction holds it. */
  private holder: object | undefined;
  private busy = false;

  constructor(
    readonly serial: boolean,
    /** The ambient transaction of the calling context (the one a request's unit of work binds). */
    private readonly ambient: () => unknown = () => undefined,
    public waitMs: number = DEFAULT_WRITE_WAIT_MS,
  ) {}

  /** Runs `fn` holding the gate; its queries (and what it starts) pass the gate's own checks. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.serial || this.heldHere()) return fn();
    const release = await this.acquire();
    try {
      return await held.run(new Set([...(held.getStore() ?? []), this]), fn);
    } finally {
      release();
    }
  }

  /**
   * Takes the gate for `holder` (a transaction) until the returned function is called (once).
   * Throws when the caller would wait for a transaction of its own context, or waited too long.
   */
  async acquire(holder?: object): Promise<() => void> {
    if (!this.serial) return () => {};
    const ambient = this.ambient();
    if (this.busy && ambient !== undefined && ambient !== null && ambient === this.holder) {
      throw new UnitOfWorkError(
        'begin',
        new Error(
          'this write would wait for the SQLite write lock that the surrounding unit of work holds (SQLite has one writer): ' +
            'run it inside that transaction, or after the unit of work has completed',
        ),
      );
    }
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const previous = this.tail;
    this.tail = previous.then(() => mine);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.waitMs);
      timer.unref?.();
    });
    const outcome = await Promise.race([previous.then(() => 'ok' as const), timedOut]);
    clearTimeout(timer);
    let done = false;
    const give = () => {
      if (done) return;
      done = true;
      if (outcome === 'ok') {
        this.busy = false;
        this.holder = undefined;
      }
      release();
    };
    if (outcome === 'timeout') {
      // Keep the queue's order: our turn passes straight on when it comes.
      give();
      throw new UnitOfWorkError('begin', new Error(`waited ${this.waitMs} ms for the SQLite write lock (one writer at a time); the database is busy`), { status: 503 });
    }
    this.busy = true;
    this.holder = holder;
    return give;
  }

  /** Whether the current async context runs inside `run()` of this gate. */
  heldHere(): boolean {
    return held.getStore()?.has(this) ?? false;
  }
}

const gates = new WeakMap<Sequelize, WriteGate>();
const waits = new WeakMap<Sequelize, number>();

/** Sets how long writers on this Sequelize instance wait for the SQLite write gate (before its first use). */
export function setWriteWait(sequelize: Sequelize, ms: number): void {
  waits.set(sequelize, ms);
  const gate = gates.get(sequelize);
  if (gate) gate.waitMs = ms;
}

function writeWaitOf(sequelize: Sequelize): number {
  return waits.get(sequelize) ?? DEFAULT_WRITE_WAIT_MS;
}

/** The write gate shared by everything that writes through this Sequelize instance. */
export function writeGateFor(sequelize: Sequelize): WriteGate {
  let gate = gates.get(sequelize);
  if (!gate) {
    gate = new WriteGate(sequelize.getDialect() === 'sqlite', () => currentTransaction(sequelize), writeWaitOf(sequelize));
    gates.set(sequelize, gate);
  }
  return gate;
}

/**
 * Whether the Sequelize instance is an SQLite database that its connections cannot share: in
 * memory (one connection shared by every transaction), or an empty path (SQLite opens a private
 * temporary database for each connection).
 */
export function isSqliteMemory(sequelize: Sequelize): boolean {
  if (sequelize.getDialect() !== 'sqlite') return false;
  const o = (sequelize as unknown as { options: { storage?: string; host?: string } }).options;
  // As Sequelize's SQLite connection manager picks the file (`sqlite::memory:` leaves host '').
  const storage = o.storage ?? (o.host || ':memory:');
  return storage === '' || storage === ':memory:' || storage.startsWith('file::memory:');
}

/**
 * Refuses an in-memory SQLite database: Sequelize gives all its transactions one shared
 * connection there, so concurrent units of work would see, and roll back, each other's writes.
 */
export function refuseSqliteMemory(sequelize: Sequelize): void {
  if (!isSqliteMemory(sequelize)) return;
  throw new OutboxConfigError(
    'sequelize',
    ':memory:',
    "must not be an in-memory SQLite database (nor an empty storage path): Sequelize shares one connection among all its transactions in memory, so concurrent requests would see and undo each other's writes, and an empty path gives each connection a private database. Use a file, e.g. new Sequelize('sqlite:./data/app.db'), or a temporary file in tests",
  );
}

const prepared = new WeakMap<Sequelize, Promise<void>>();

/**
 * One-time connection settings: on SQLite a busy timeout (so that a writer outside our gate waits
 * instead of failing at once) and WAL journaling for file databases.
 */
export function prepareConnection(sequelize: Sequelize): Promise<void> {
  let p = prepared.get(sequelize);
  if (!p) {
    p = (async () => {
      if (sequelize.getDialect() !== 'sqlite') return;
      await sequelize.query('PRAGMA busy_timeout = 10000', { raw: true, transaction: null });
      if (!isSqliteMemory(sequelize)) await sequelize.query('PRAGMA journal_mode = WAL', { raw: true, transaction: null });
    })();
    prepared.set(sequelize, p);
    p.catch(() => prepared.delete(sequelize));
  }
  return p;
}
