import { PublishError } from '../../errors';
import type { LockedBatchOutcome, OutboxRecord } from '../../ports/outbox-store';
import { isPermanent, toFailedMark, type FailedPublish } from '../failures';
import type { OutboxEventMap, OutboxEventName } from '../events';
import { errorMessage } from '../logger';
import { sendMessages, type SendOutcome } from '../send';
import type { ProcessorContext } from './context';
import { ProcessorError, reportFailure, safeEmit } from './pass';

const NAME = 'retry-by-database';
/** Lanes of the pass under row locks: two keep the publisher busy while the database works. */
const LANES = 2;

/**
 * The database retry (MASA's RetryByData), safe with any number of replicas.
 *
 * A pass claims due rows in batches of `retryBatchSize` through `store.claimDue`: a row is due
 * when its `next_attempt_time` has come, which covers
 * - NotPublished rows whose committer never reported back: the insert leases them to the
 *   committer for `leaseTime`, which is the dispatch grace period;
 * - InProgress rows whose claimer's lease ran out (it died or hung);
 * - PublishedFailed rows whose backoff is over.
 * Terminal rows and Published rows have no next attempt time and are never looked at.
 *
 * The claim leases the rows to this process and counts an attempt (`timesSent`); a row given
 * back without being handed to the publisher has that count undone. They are
 * published through `sendMessages` (bulk, grouped by topic; a partial failure fails only its own
 * entries), the published ones are marked, and the failed ones go through `failures.record` with
 * `timesSent` as the attempt: a backoff with jitter, or terminal after `maxRetryTimes` or on a
 * permanent error. A row whose content is not JSON can never be published: it is failed at once,
 * as permanent, instead of costing every retry a slot.
 *
 * The pass goes on with the next batch while batches come back full, so a backlog drains in one
 * pass instead of `retryBatchSize` rows per interval; the next batch is claimed while the current
 * one is published. It stops early when a whole batch failed for a transient reason (the broker
 * is down: no point in hammering it) and between batches when the processors are stopping.
 *
 * With `relayUnderRowLocks` (the default) on a database with SKIP LOCKED, the pass runs without
 * leases: see lockedPass(). Elsewhere (SQLite, older MySQL), or with the option off, it claims
 * with leases as above.
 */
export class RetryByDatabase {
  /**
   * Rows this process claimed and has not settled: 'claimed' (no outcome recorded) or 'published'
   * (published, the mark did not make it to the database). stop() settles them.
   */
  private readonly held = new Map<string, { state: 'claimed' | 'published'; row: OutboxRecord }>();
  /** With `relayUnderRowLocks`, whether the store can (SKIP LOCKED): unknown until the first pass asks it. */
  private lockedRelay: boolean | undefined;

  constructor(
    private readonly ctx: ProcessorContext,
    private readonly halted: () => boolean,
  ) {}

  /**
   * One pass. Returns how many rows it claimed (published or failed).
   *
   * The pass is a pipeline: while a batch is being published, the next one is claimed, and a
   * batch's Published mark is written while later batches are claimed and published. Database
   * time and broker time overlap instead of adding up. A batch claimed ahead that the pass then
   * does not publish (the broker went down, the processors are stopping, something threw) is
   * given back with its attempt uncounted: only a row handed to the publisher counts an attempt.
   * The pass waits for every mark before it ends.
   */
  async pass(): Promise<number> {
    // Rows a failed write left behind: marking them before their lease runs out saves a second publish.
    if (this.held.size > 0) await this.settle();
    await this.ctx.clock.sync?.();
    if (this.ctx.tuning.relayUnderRowLocks && this.lockedRelay !== false) {
      const sent = await this.lockedPass();
      if (sent !== null) return sent;
      this.lockedRelay = false;
    }
    return this.leasedPass();
  }

  /**
   * The pass under row locks (databases with SKIP LOCKED): up to two lanes, each locking a batch
   * in a transaction of its own, publishing it, and writing the outcome before COMMIT. The second
   * lane starts when a batch comes back full. Publishing takes turns: while one lane publishes,
   * the other locks its next batch or writes its marks.
   * A lane whose turn comes after the broker went down, or after the processors began to stop,
   * publishes nothing: its rows are left as they were, uncounted. A lane's transaction may sit
   * idle for `leaseTime` while its batch is out; a process frozen longer loses its connection and
   * its locks, as a lease runs out. Null: the store cannot.
   */
  private async lockedPass(): Promise<number | null> {
    const { store, tuning } = this.ctx;
    if (!store.relayLocked) return null;
    const size = tuning.retryBatchSize;
    let sent = 0;
    let brokerDown = false; // no batch is sent after this
    let drained = false; // no batch is locked after this (those locked are still sent)
    let unsupported = false;
    let turn: Promise<unknown> = Promise.resolve();

    const lanes: Array<Promise<void>> = [];
    // `batch.report` emits the batch's events: called once its transaction has committed.
    const send = async (rows: OutboxRecord[], batch: { report?: () => void; movedKeys?: boolean }): Promise<LockedBatchOutcome> => {
      // A full batch says there is more: the second lane starts locking the next one.
      if (rows.length === size && lanes.length < LANES) lanes.push(lane());
      const mine = turn.then(async () => {
        if (brokerDown || this.halted()) return { now: this.ctx.clock.now(), published: [], failed: [], report: () => {} };
        sent += rows.length;
        const r = await this.publishBatch(rows);
        if (r.published.length === 0 && r.transient > 0) brokerDown = true; // no point in hammering it
        return r;
      });
      turn = mine.catch(() => undefined);
      const outcome = await mine;
      batch.report = outcome.report;
      // Keyed rows published: the next event of each of their keys is due once this commits.
      const published = new Set(outcome.published);
      batch.movedKeys = rows.some((r) => r.orderingKey != null && published.has(r.id));
      return outcome;
    };
    const lane = async (): Promise<void> => {
      while (!drained && !brokerDown && !this.halted()) {
        let locked: number | null;
        const batch: { report?: () => void; movedKeys?: boolean } = {};
        try {
          locked = await store.relayLocked!(size, this.ctx.clock.now(), (rows) => send(rows, batch), { idleLimit: tuning.leaseTime });
        } catch (err) {
          drained = true;
          const published = batch.report !== undefined;
          throw new ProcessorError(NAME, published ? 'could not record the outcome of a published batch; its rows are due again' : 'could not claim due rows', err, { batchSize: size });
        }
        if (locked === null) {
          unsupported = true;
          return;
        }
        // Committed: the events of its outcome may go out now.
        batch.report?.();
        // A short batch is the end of what is due, unless it moved keys on: their next events
        // became due with it, and a key's backlog goes out one event per batch.
        if (locked < size && !batch.movedKeys) {
          drained = true;
          return;
        }
      }
    };
    lanes.push(lane());
    let failure: { reason: unknown } | undefined;
    // Lanes may start while others run: wait for each, including those started meanwhile.
    for (let i = 0; i < lanes.length; i++) {
      await lanes[i]!.catch((reason: unknown) => {
        failure ??= { reason };
      });
    }
    if (failure) throw failure.reason;
    return unsupported && sent === 0 ? null : sent;
  }

  /** The pass with leases (databases without SKIP LOCKED, or `relayUnderRowLocks: false`): see the class comment. */
  private async leasedPass(): Promise<number> {
    const { tuning } = this.ctx;
    const size = tuning.retryBatchSize;
    const marks: Promise<void>[] = [];
    let claimed = 0;
    let ahead: Promise<OutboxRecord[]> | null = this.claim(size);
    try {
      while (ahead) {
        const batch: OutboxRecord[] = await ahead;
        ahead = null;
        if (batch.length === 0) break;
        claimed += batch.length;
        // A full batch says there is more: claim it while this one is published.
        if (batch.length === size && !this.halted()) ahead = this.claim(size);
        const { published, transient, mark } = await this.relay(batch);
        marks.push(mark);
        if (published === 0 && transient > 0) break; // the broker is down: no point in hammering it
        if (this.halted()) break;
      }
    } finally {
      if (ahead) await this.giveBack(ahead);
      await Promise.all(marks);
    }
    return claimed;
  }

  /**
   * Publishes a locked batch. Resolves with what to write (Published ids, failure marks) and
   * `report`, which emits the batch's events once the write is committed.
   */
  private async publishBatch(batch: readonly OutboxRecord[]): Promise<LockedBatchOutcome & { transient: number; report: () => void }> {
    const { ctx } = this;
    for (const r of batch) ctx.localQueue.remove(r.id);
    // The claim counts no attempt here: the attempt is the one this publish makes.
    const { outcome, failures } = await this.send(batch, (r) => r.timesSent + 1);
    const now = ctx.clock.now();
    const planned = ctx.failures.plan(failures, now);
    const published = outcome.published.map((m) => m.id);
    return {
      now,
      published,
      failed: planned.map(toFailedMark),
      transient: failures.filter((f) => !isPermanent(f.error)).length,
      report: () => {
        if (published.length > 0) this.emit('published', { ids: published, source: 'retry' });
        ctx.failures.report(planned);
      },
    };
  }

  /** Gives back a batch claimed ahead and never published: due at once, its attempt uncounted. */
  private async giveBack(claim: Promise<OutboxRecord[]>): Promise<void> {
    let rows: OutboxRecord[];
    try {
      rows = await claim;
    } catch {
      return; // the claim failed: nothing is held
    }
    await this.releaseUnsettled(rows);
  }

  /**
   * Settles what a failed write left behind: marks published rows Published, gives claimed rows
   * back (due at once). Runs before each pass and on stop(). Never throws; what still fails stays
   * leased until `leaseTime` runs out (and is tried again here meanwhile).
   */
  async settle(): Promise<void> {
    const { store, clock, owner } = this.ctx;
    const published = [...this.held.values()].filter((h) => h.state === 'published').map((h) => h.row);
    const claimed = [...this.held].filter(([, h]) => h.state === 'claimed').map(([id]) => id);
    if (published.length > 0) {
      try {
        await this.writePublished(published);
        for (const r of published) this.held.delete(r.id);
        this.emit('published', { ids: published.map((r) => r.id), source: 'retry' });
      } catch (err) {
        reportFailure(this.ctx, new ProcessorError(NAME, 'could not mark published rows (settling)', err, { count: published.length }));
      }
    }
    if (claimed.length > 0) {
      try {
        await store.release(claimed, owner, clock.now(), { undoAttempt: true });
        for (const id of claimed) this.held.delete(id);
      } catch (err) {
        reportFailure(this.ctx, new ProcessorError(NAME, 'could not release claimed rows (settling)', err, { count: claimed.length }));
      }
    }
  }

  private async claim(limit: number): Promise<OutboxRecord[]> {
    const { store, clock, owner, tuning, localQueue } = this.ctx;
    const now = clock.now();
    let rows: OutboxRecord[];
    try {
      rows = await store.claimDue(limit, now, owner, now + tuning.leaseTime * 1000);
    } catch (err) {
      throw new ProcessorError(NAME, 'could not claim due rows', err, { batchSize: limit });
    }
    for (const r of rows) {
      this.held.set(r.id, { state: 'claimed', row: r });
      // Only a row whose local lease ran out can be due; the database retry owns it now.
      localQueue.remove(r.id);
    }
    return rows;
  }

  /**
   * Sends a batch (rows whose content is not JSON fail at once, as permanent) and emits a
   * 'failed' event per failure, with the attempt `attemptOf` gives.
   */
  private async send(batch: readonly OutboxRecord[], attemptOf: (r: OutboxRecord) => number): Promise<{ outcome: SendOutcome; failures: FailedPublish[] }> {
    const failed: Array<{ message: OutboxRecord; error: Error }> = [];
    const sendable: OutboxRecord[] = [];
    for (const r of batch) {
      const poison = unpublishable(r);
      if (poison) failed.push({ message: r, error: poison });
      else sendable.push(r);
    }
    const outcome = await sendMessages(this.ctx.publisher, sendable, this.ctx.tuning);
    const attempt = new Map(batch.map((r) => [r.id, attemptOf(r)]));
    const failures = [...failed, ...outcome.failed].map(({ message, error }) => ({ message, error, attempt: attempt.get(message.id) ?? 0 }));
    for (const f of failures) this.emit('failed', { id: f.message.id, topic: f.message.topic, attempt: f.attempt, error: f.error });
    return { outcome, failures };
  }

  /** Publishes a claimed batch and records its failures; `mark` settles once its Published mark is written. */
  private async relay(batch: readonly OutboxRecord[]): Promise<{ published: number; transient: number; mark: Promise<void> }> {
    const { ctx } = this;
    try {
      // The claim counted the attempt.
      const { outcome, failures } = await this.send(batch, (r) => r.timesSent);
      // markPublished never rejects (a failed mark is reported and settled later).
      const mark = outcome.published.length > 0 ? this.markPublished(outcome.published as OutboxRecord[]) : Promise.resolve();
      const transient = failures.filter((f) => !isPermanent(f.error)).length;
      if (failures.length > 0) {
        // Backoff or terminal, and the retryScheduled / terminalFailure events. A failed write is
        // logged there; the rows then stay leased and come back when the lease runs out.
        await ctx.failures.record(failures, ctx.owner);
        for (const { message } of failures) this.held.delete(message.id);
      }
      return { published: outcome.published.length, transient, mark };
    } finally {
      await this.releaseUnsettled(batch);
    }
  }

  /**
   * Writes the Published marks; keyed rows move their keys on, and the next event of each key goes
   * to the dispatcher (leased to this process).
   */
  private async writePublished(rows: readonly OutboxRecord[]): Promise<void> {
    const { store, clock, dispatcher } = this.ctx;
    const keyed = rows.filter((r) => r.orderingKey != null);
    const ids = (keyed.length === 0 ? rows : rows.filter((r) => r.orderingKey == null)).map((r) => r.id);
    await Promise.all([ids.length > 0 ? store.markPublished(ids, clock.now()) : undefined, keyed.length > 0 ? dispatcher.publishedInOrder(keyed) : undefined]);
  }

  private async markPublished(rows: readonly OutboxRecord[]): Promise<void> {
    const ids = rows.map((r) => r.id);
    for (const r of rows) this.held.set(r.id, { state: 'published', row: r });
    try {
      await this.writePublished(rows);
    } catch (err) {
      // Published but not marked: the next pass and stop() try again; if the lease runs out first,
      // the rows are published once more (the subscribers' inbox drops the repeat).
      reportFailure(this.ctx, new ProcessorError(NAME, 'could not mark published rows', err, { count: ids.length }));
      return;
    }
    for (const id of ids) this.held.delete(id);
    this.emit('published', { ids, source: 'retry' });
  }

  /** Gives back the rows of a batch that had no outcome (never handed to the publisher): their attempt is not counted. */
  private async releaseUnsettled(batch: readonly OutboxRecord[]): Promise<void> {
    const ids = batch.filter((r) => this.held.get(r.id)?.state === 'claimed').map((r) => r.id);
    if (ids.length === 0) return;
    try {
      await this.ctx.store.release(ids, this.ctx.owner, this.ctx.clock.now(), { undoAttempt: true });
      for (const id of ids) this.held.delete(id);
    } catch (err) {
      this.ctx.logger.warn('could not release claimed rows; they come back when their lease runs out', { processor: NAME, count: ids.length, error: errorMessage(err) });
    }
  }

  private emit<K extends OutboxEventName>(name: K, ...args: OutboxEventMap[K]): void {
    safeEmit(this.ctx, name, ...args);
  }
}

/**
 * Why a row can never be published, or undefined. The publisher port takes `content` as the JSON
 * of the event; a row that holds something else (written by hand, truncated) fails permanently
 * here instead of failing inside the publisher on every attempt (and, in a bulk call, failing
 * the rows batched with it).
 */
function unpublishable(r: OutboxRecord): PublishError | undefined {
  try {
    JSON.parse(r.content);
    return undefined;
  } catch (err) {
    return new PublishError(`the row's content is not valid JSON: ${errorMessage(err)}`, {
      topic: r.topic,
      pubsubName: r.pubsubName,
      permanent: true,
      cause: err,
    });
  }
}
