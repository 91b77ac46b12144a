import { randomUUID } from 'node:crypto';
import type { Sequelize } from 'sequelize';
import type { OutboxOptions } from '../../src';
import { resolveTableNames, SequelizeInboxStore, SequelizeOutboxStore } from '../../src/extend';
import { Outbox } from '../../src/outbox';
import { dialectOf, quoteIdent } from '../../src/adapters/sequelize/dialect';
import type { Logger } from '../../src/core/logger';
import type { OutboxMessage } from '../../src/ports/publisher';
import { RecordingPublisher } from '../support/recording-publisher';

/** A clock tests move by hand. */
export class TestClock {
  constructor(public t = Date.now()) {}
  now(): number {
    return this.t;
  }
  advance(seconds: number): number {
    this.t += Math.round(seconds * 1000);
    return this.t;
  }
}

/** Keeps every log line; silent otherwise. */
export class CapturingLogger implements Logger {
  readonly lines: Array<{ level: string; message: string; context?: Record<string, unknown> }> = [];
  debug(message: string, context?: Record<string, unknown>): void {
    this.lines.push({ level: 'debug', message, context });
  }
  info(message: string, context?: Record<string, unknown>): void {
    this.lines.push({ level: 'info', message, context });
  }
  warn(message: string, context?: Record<string, unknown>): void {
    this.lines.push({ level: 'warn', message, context });
  }
  error(message: string, context?: Record<string, unknown>): void {
    this.lines.push({ level: 'error', message, context });
  }
  at(level: string): Array<{ message: string; context?: Record<string, unknown> }> {
    return this.lines.filter((l) => l.level === level);
  }
}

/** A RecordingPublisher whose calls wait while `hold()` is in effect. */
export class GatedPublisher extends RecordingPublisher {
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  waiting = 0;

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }
  release(): void {
    this.open?.();
    this.gate = null;
  }
  override async publish(message: OutboxMessage): Promise<void> {
    await this.pass();
    return super.publish(message);
  }
  override async publishBulk(messages: readonly OutboxMessage[]) {
    await this.pass();
    return super.publishBulk(messages);
  }
  private async pass(): Promise<void> {
    if (!this.gate) return;
    this.waiting += 1;
    try {
      await this.gate;
    } finally {
      this.waiting -= 1;
    }
  }
}

export interface Harness {
  outbox: Outbox;
  /** The outbox store the outbox was built on (tests read rows and inject faults through it). */
  store: SequelizeOutboxStore;
  publisher: RecordingPublisher;
  clock: TestClock;
  logger: CapturingLogger;
  errors: Error[];
  /** Event ids of every failed publish attempt the outbox reported, in order. */
  failed: string[];
}

/** An outbox on `sequelize` with a test clock, a fixed jitter and a capturing logger; migrated. */
export async function makeOutbox(sequelize: Sequelize, options: Partial<OutboxOptions> = {}): Promise<Harness> {
  const clock = (options.clock as TestClock | undefined) ?? new TestClock();
  const logger = (options.logger as CapturingLogger | undefined) ?? new CapturingLogger();
  const publisher = (options.publisher as RecordingPublisher | undefined) ?? new RecordingPublisher();
  const tables = resolveTableNames(options.tables);
  const store = new SequelizeOutboxStore(sequelize, tables.outbox, tables.outboxKeys);
  const outbox = new Outbox(
    { sequelize, publisher, clock, logger, random: () => 0.5, ...options },
    { outbox: store, inbox: new SequelizeInboxStore(sequelize, tables.inbox, tables.inboxKeys), tables },
  );
  await outbox.migrate();
  const errors: Error[] = [];
  outbox.on('error', (e) => errors.push(e));
  const failed: string[] = [];
  outbox.on('failed', (e) => failed.push(e.id));
  return { outbox, store, publisher, clock, logger, errors, failed };
}

/**
 * The rows of each batch the relay took, in order: claimed with leases (`claimDue`), or locked by
 * the relay under row locks (`relayLocked`, on databases with SKIP LOCKED). Empty claims are not
 * counted.
 */
export function countClaims(harness: Harness): number[] {
  const claims: number[] = [];
  const claimDue = harness.store.claimDue.bind(harness.store);
  harness.store.claimDue = async (...args) => {
    const rows = await claimDue(...args);
    if (rows.length > 0) claims.push(rows.length);
    return rows;
  };
  const relayLocked = harness.store.relayLocked.bind(harness.store);
  harness.store.relayLocked = (limit, now, send, options) =>
    relayLocked(
      limit,
      now,
      (rows) => {
        claims.push(rows.length);
        return send(rows);
      },
      options,
    );
  return claims;
}

/** Makes the relay's next `count` claims (leased or locked) throw `error(n)` before reaching the database. */
export function failClaims(harness: Harness, count: number, error: (n: number) => Error): void {
  let calls = 0;
  const claimDue = harness.store.claimDue.bind(harness.store);
  harness.store.claimDue = async (...args) => {
    if (++calls <= count) throw error(calls);
    return claimDue(...args);
  };
  const relayLocked = harness.store.relayLocked.bind(harness.store);
  harness.store.relayLocked = async (...args) => {
    if (++calls <= count) throw error(calls);
    return relayLocked(...args);
  };
}

/** Whether this outbox's relay runs under row locks (asked for, and the database has SKIP LOCKED), rather than with leases. */
export async function relaysUnderLocks(harness: Harness): Promise<boolean> {
  return harness.outbox.tuning.relayUnderRowLocks && (await harness.store.usesSkipLocked());
}

export interface SeedRow {
  id?: string;
  topic?: string;
  pubsubName?: string;
  content?: string;
  state?: number;
  timesSent?: number;
  modificationTime?: number;
  nextAttemptTime?: number | null;
  lockOwner?: string | null;
  lockedUntil?: number | null;
}

/**
 * Writes rows straight into the outbox table with multi-row INSERTs (1000 rows a statement).
 * Defaults: NotPublished, due at `now`, left by a dead committer. Returns the event ids.
 */
export async function seedRows(outbox: Outbox, count: number, row: SeedRow | ((i: number) => SeedRow) = {}, now = Date.now()): Promise<string[]> {
  const sequelize = outbox.sequelize;
  const table = quoteIdent(dialectOf(sequelize), outbox.tables.outbox);
  const ids: string[] = [];
  for (let start = 0; start < count; start += 1000) {
    const values: string[] = [];
    const params: unknown[] = [];
    for (let i = start; i < Math.min(count, start + 1000); i++) {
      const r = typeof row === 'function' ? row(i) : row;
      const id = r.id ?? randomUUID();
      ids.push(id);
      values.push('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)');
      params.push(
        id,
        'Seeded',
        r.topic ?? 'Seeded',
        r.pubsubName ?? 'pubsub',
        r.content ?? JSON.stringify({ id, n: i }),
        r.state ?? 0,
        r.timesSent ?? 1,
        now,
        r.modificationTime ?? now,
        r.nextAttemptTime === undefined ? now : r.nextAttemptTime,
        r.lockOwner === undefined ? 'dead-committer' : r.lockOwner,
        r.lockedUntil === undefined ? now : r.lockedUntil,
      );
    }
    await sequelize.query(
      `INSERT INTO ${table} (event_id, event_type_name, topic, pubsub_name, content, state, times_sent, creation_time, ` +
        `modification_time, next_attempt_time, lock_owner, locked_until, row_version) VALUES ${values.join(', ')}`,
      { replacements: params, raw: true },
    );
  }
  return ids;
}

/** Runs `pass` until it reports no work. Returns the total. */
export async function drain(pass: () => Promise<number>, limit = 10_000): Promise<number> {
  let total = 0;
  for (let i = 0; i < limit; i++) {
    const n = await pass();
    if (n === 0) return total;
    total += n;
  }
  throw new Error('the pass never ran dry');
}

/** Waits (without a time limit of its own: mocha's timeout applies) until `check` holds. */
export async function until(check: () => boolean | Promise<boolean>, pollMs = 10): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, pollMs));
}
