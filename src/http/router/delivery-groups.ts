/**
 * Group commit for deliveries with the inbox on. A delivery that finds a delivery transaction
 * free starts one at once (no added wait); the deliveries that arrive while the transactions are
 * all open share the next one:
 *
 *   BEGIN; one multi-row inbox INSERT that tells which ids are new; the handlers of the new ids,
 *   in turn; COMMIT
 *
 * so N deliveries cost N handler writes plus three round trips instead of four each. Every
 * answer stays per delivery:
 * - SUCCESS only once the group's COMMIT succeeded (a duplicate id, recorded earlier or by an
 *   earlier member of the group, runs no handler and answers SUCCESS with the others);
 * - a handler that fails (throws, answers RETRY or DROP) rolls the group back and gets its own
 *   answer; the others run again, without it, in a new transaction (they never see its writes),
 *   now each behind a savepoint: a handler failing there is rolled back to its savepoint, with
 *   its inbox row, and the others go on. A handler may thus run again for a delivery whose
 *   earlier run was rolled back with its group: its database writes happen once;
 * - when the transaction itself fails (BEGIN, the inbox INSERT, COMMIT: a lock wait timeout, a
 *   deadlock, a lost connection), each member runs again alone, so that one conflict answers
 *   RETRY for its own delivery only.
 * Events the handlers publish are written in the group's transaction and dispatched after its
 * COMMIT (never when it rolls back).
 *
 * A bulk delivery is one group of its own: one transaction for all its entries.
 */
import { AsyncResource } from 'node:async_hooks';
import type { Logger } from '../../core/logger';
import type { InboxKey } from '../../ports/inbox-store';
import type { StoreTransaction } from '../../ports/outbox-store';
import { about, answerFor, answerInboxFailure, errorCode, invokeHandler, type Delivery, type HandlerOutcome, type InboxBinding } from './delivery';
import { SUCCESS, type DaprStatus } from './statuses';
import { inboxKey } from './topic-registration';
import { countDuplicate } from '../../core/telemetry/spans';

/** How deliveries are grouped. */
export interface GroupLimits {
  /** Most deliveries in one transaction (bulk deliveries are one group whatever their size). */
  maxSize: number;
  /** Most delivery transactions open at once; more deliveries wait and share the next one. */
  maxOpen: number;
}

interface Member {
  d: Delivery;
  key: InboxKey;
  /** The async context the delivery arrived in (its request's), where its handler runs. */
  context: AsyncResource;
  settle: (status: DaprStatus) => void;
}

/** PostgreSQL's "current transaction is aborted, commands ignored until end of transaction block". */
const IN_FAILED_TRANSACTION = '25P02';

/** Ends a group's transaction when a handler did not succeed (rolls back). */
class HandlerStopped extends Error {
  constructor(
    readonly index: number,
    readonly outcome: HandlerOutcome,
  ) {
    super(`handler answered ${outcome.status}`);
  }
}

export class DeliveryGroups {
  private readonly waiting: Member[] = [];
  private open = 0;

  constructor(
    private readonly inbox: InboxBinding,
    private readonly logger: Logger,
    private readonly limits: GroupLimits,
  ) {}

  /** Runs one delivery: at once when a transaction is free, else in the next group. */
  submit(d: Delivery): Promise<DaprStatus> {
    return new Promise((resolve) => {
      this.waiting.push(this.member(d, resolve));
      this.pump();
    });
  }

  /** Runs deliveries as one group of their own (a bulk delivery); statuses in their order. */
  async runTogether(ds: readonly Delivery[]): Promise<DaprStatus[]> {
    const statuses: DaprStatus[] = new Array(ds.length);
    const members = ds.map((d, i) => this.member(d, (s) => (statuses[i] = s)));
    await this.inbox.transactions.detached(() => this.run(members));
    return statuses;
  }

  private member(d: Delivery, settle: (status: DaprStatus) => void): Member {
    return { d, key: { consumer: d.topic.consumer, eventId: inboxKey(d.ctx.id) }, context: new AsyncResource('dapr-outbox.delivery'), settle };
  }

  private pump(): void {
    while (this.open < this.limits.maxOpen && this.waiting.length > 0) {
      const group = this.waiting.splice(0, this.limits.maxSize);
      this.open++;
      // Out of any delivery's transaction context: the group begins its own.
      void this.inbox.transactions
        .detached(() => this.run(group))
        .finally(() => {
          this.open--;
          this.pump();
        });
    }
  }

  /**
   * Runs members until each has its answer. Never throws. The first attempt runs the handlers
   * with no savepoints (one round trip less per delivery: with a savepoint each, a bulk delivery
   * of 100 took twice the statements); once a handler failed, the others run again each behind a
   * savepoint, so that a further failure makes nobody else run again.
   */
  private async run(members: Member[]): Promise<void> {
    let rest = members;
    let guarded = false;
    try {
      for (; rest.length > 0; guarded = true) rest = await this.attempt(rest, guarded);
    } catch (err) {
      // Only a bug gets here: answer RETRY rather than leave a delivery hanging.
      for (const m of rest) m.settle(answerInboxFailure(err, m.d, this.logger));
    }
  }

  /**
   * One transaction for `members`. Settles every member it can decide and returns those to run
   * again (after a handler failed, the others; after the transaction failed, none: they have
   * been run alone).
   */
  private async attempt(members: Member[], guarded: boolean): Promise<Member[]> {
    const { transactions, store, now } = this.inbox;
    const savepoints = guarded && members.length > 1 && transactions.savepoint !== undefined && store.remove !== undefined;
    // Members with the key of an earlier member ride on that one's outcome.
    const slots = new Map<string, number>();
    const keys: InboxKey[] = [];
    const leaders: number[] = [];
    const slot: number[] = members.map((m, i) => {
      const k = `${m.key.consumer}\u0000${m.key.eventId}`;
      let at = slots.get(k);
      if (at === undefined) {
        at = keys.push(m.key) - 1;
        leaders.push(i);
        slots.set(k, at);
      }
      return at;
    });
    let fresh: boolean[] = [];
    /** Members whose handler failed, and whose writes were rolled back to their savepoint. */
    const failed = new Map<number, HandlerOutcome>();
    try {
      await transactions.run(async (tx) => {
        fresh = await this.record(keys, tx, now());
        for (let i = 0; i < members.length; i++) {
          const at = slot[i]!;
          if (!fresh[at] || leaders[at] !== i) continue;
          const undo = savepoints ? await transactions.savepoint!(tx) : undefined;
          const outcome = await this.invoke(members[i]!, tx);
          if (outcome.status === SUCCESS) continue;
          // PostgreSQL refuses every statement once one failed (and an earlier handler caught
          // its error): the transaction failed, not this handler.
          if (errorCode(outcome.error) === IN_FAILED_TRANSACTION) throw outcome.error;
          // Undo this handler's writes and its inbox record only, and go on with the others; when
          // the database lost the whole transaction (a deadlock), roll back and run them again.
          const undone = undo !== undefined && (await undo().then(() => store.remove!([keys[at]!], tx)).then(() => true, () => false));
          if (!undone) throw new HandlerStopped(i, outcome);
          failed.set(i, outcome);
        }
      });
    } catch (err) {
      for (const [i, outcome] of failed) members[i]!.settle(answerFor(outcome, members[i]!.d, this.logger));
      if (err instanceof HandlerStopped) {
        const stopped = members[err.index]!;
        stopped.settle(answerFor(err.outcome, stopped.d, this.logger));
        return members.filter((_, i) => i !== err.index && !failed.has(i));
      }
      const rest = members.filter((_, i) => !failed.has(i));
      if (rest.length === 0) return [];
      if (rest.length === 1) {
        rest[0]!.settle(answerInboxFailure(err, rest[0]!.d, this.logger));
        return [];
      }
      for (const m of rest) await this.run([m]);
      return [];
    }
    // Committed. A member with the key of a failed one runs again (its handler never ran).
    const again: Member[] = [];
    members.forEach((m, i) => {
      const outcome = failed.get(i);
      if (outcome) return m.settle(answerFor(outcome, m.d, this.logger));
      const at = slot[i]!;
      if (leaders[at] !== i && failed.has(leaders[at]!)) return again.push(m);
      if (!fresh[at] || leaders[at] !== i) {
        countDuplicate(m.d.ctx);
        this.logger.debug('duplicate delivery answered SUCCESS without running the handler', about(m.d, { consumer: m.key.consumer }));
      }
      m.settle(SUCCESS);
    });
    return again;
  }

  /** The handler of one member, in the group's transaction and in the member's own async context. */
  private async invoke(m: Member, tx: StoreTransaction): Promise<HandlerOutcome> {
    m.d.ctx.transaction = tx;
    try {
      return await m.context.runInAsyncScope(() => this.inbox.transactions.bind(tx, () => invokeHandler(m.d)));
    } finally {
      m.d.ctx.transaction = undefined;
    }
  }

  private record(keys: readonly InboxKey[], tx: StoreTransaction, now: number): Promise<boolean[]> {
    const { store } = this.inbox;
    if (store.recordAll) return store.recordAll(keys, tx, now);
    return (async () => {
      const flags: boolean[] = [];
      for (const k of keys) flags.push(await store.record(k.consumer, k.eventId, tx, now));
      return flags;
    })();
  }
}
