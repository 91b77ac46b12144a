/**
 * Ordering keys on the receive side: with the inbox on, a consumer sees each key's events in
 * their exact sequence, once, whatever order the broker delivers them in.
 *
 * A delivery is ordered when its topic has the inbox on and its CloudEvent carries both
 * - `partitionkey` (CloudEvents Partitioning extension): the ordering key, a string of 1 to 191
 *   characters, and
 * - `sequence` (CloudEvents Sequence extension): the event's place in its key's order, a decimal
 *   string "1", "2", ... (zero-padded is fine; no sign; at most Number.MAX_SAFE_INTEGER).
 * An event with only one of the two is an ordinary delivery (other producers set `partitionkey`
 * for the broker's partitioning alone). So is an event with both where either cannot be read
 * (another producer's sequence scheme, say), with a warning: it is handled, in no order.
 *
 * Per (consumer, key) the inbox's key table keeps L, the last sequence handled or skipped (0
 * before the first), and `waiting_since`; a topic's own `consumer` name is made unique to its
 * pubsub and topic there (RegisteredTopic.orderingConsumer), as a key's numbers count per topic.
 * A delivery of sequence s runs in a transaction of its own that first locks the key's row
 * (creating it when missing), so the deliveries of one key take turns: a delivery of s + 1 that arrives while the handler of s runs waits for its COMMIT
 * and then finds L = s. (Within one process they take turns in memory first, so that a waiting
 * delivery holds no pooled connection.) Then:
 * - s <= L: handled or skipped already; the handler does not run. A duplicate (the inbox holds
 *   the event id) answers SUCCESS; an event whose sequence was skipped (see below) answers DROP
 *   (the sidecar dead-letters it where the topic has a dead-letter topic), with a warning and an
 *   `orderingLate` event.
 * - s = L + 1, the next in line: the inbox record, the handler and the events it publishes run
 *   in the transaction, which also sets L = s and clears `waiting_since`. A handler that ends in
 *   RETRY is undone (to a savepoint) and the key's `waiting_since` becomes now: the head was
 *   seen, so the gap timer starts again, and a head that keeps failing holds its key for as long
 *   as the sidecar retries it. A handler (or validation hook) that ends in DROP moves the key on
 *   (L = s).
 * - s > L + 1, ahead of its turn: RETRY, and `waiting_since` becomes now when it was not set.
 *   Once the key has waited `orderingGapTimeout` seconds (router option, 600 by default; a topic
 *   may set its own), the missing sequences L + 1 .. s - 1 are skipped (a warning and an
 *   `orderingGap` event), and s is handled as the next in line. This is how a key gets past an
 *   event nobody delivers any more: lost by the broker, dead-lettered by the sidecar after its
 *   retries, or deleted from the publisher's outbox.
 *   With `orderingStart: 'first-delivered'`, a key the consumer never handled (no position yet)
 *   starts at whatever sequence comes first instead of waiting for 1.
 * Keyed deliveries never join a delivery group (group commit): each has its own transaction.
 * A bulk delivery's keyed entries run one at a time, in the order they came.
 *
 * An inbox store without key positions (`InboxStore.keys`) handles keyed deliveries like the
 * others, in any order, and the log says so once.
 */
import type { OutboxEventMap } from '../../core/events';
import { errorMessage, type Logger } from '../../core/logger';
import { countDuplicate } from '../../core/telemetry/spans';
import type { InboxKeyStore, KeyPosition } from '../../ports/inbox-store';
import type { StoreTransaction } from '../../ports/outbox-store';
import { about, answerFor, answerInboxFailure, errorCode, invokeHandler, type Delivery, type HandlerOutcome, type InboxBinding } from './delivery';
import type { ResolvedRouterOptions } from './router-options';
import { DROP, RETRY, SUCCESS, type DaprStatus } from './statuses';
import { INBOX_KEY_MAX, inboxKey } from './topic-registration';
import type { CloudEvent } from './types';

/** What a CloudEvent says about its order. */
export type Ordering = { kind: 'none' } | { kind: 'malformed'; reason: string } | { kind: 'ordered'; key: string; sequence: number };

const NONE: { kind: 'none' } = Object.freeze({ kind: 'none' });

/** PostgreSQL's "current transaction is aborted, commands ignored until end of transaction block". */
const IN_FAILED_TRANSACTION = '25P02';

/** Reads `partitionkey` and `sequence` (see the rules above). */
export function readOrdering(event: CloudEvent): Ordering {
  const key = event.partitionkey;
  const sequence = event.sequence;
  if (key === undefined || key === null || sequence === undefined || sequence === null) return NONE;
  if (typeof key !== 'string' || key.length === 0 || key.length > INBOX_KEY_MAX) {
    return { kind: 'malformed', reason: `'partitionkey' must be a string of 1 to ${INBOX_KEY_MAX} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}` };
  }
  // Zero-padded numbers ("0042") are read too: padding is how numbers are made to sort as text.
  if (typeof sequence !== 'string' || !/^0*[1-9][0-9]{0,15}$/.test(sequence) || !Number.isSafeInteger(Number(sequence))) {
    const shown = typeof sequence === 'string' ? JSON.stringify(sequence.length > 20 ? `${sequence.slice(0, 20)}...` : sequence) : typeof sequence;
    return { kind: 'malformed', reason: `'sequence' must be a decimal string of a positive integer (no sign, at most ${Number.MAX_SAFE_INTEGER}), got ${shown}` };
  }
  return { kind: 'ordered', key, sequence: Number(sequence) };
}

/** Ends a head's transaction when its handler failed and could not be undone alone. */
class HeadStopped extends Error {
  constructor(readonly outcome: HandlerOutcome) {
    super(`handler answered ${outcome.status}`);
  }
}

/** Runs keyed deliveries by the rules above. */
export class OrderedDeliveries {
  private warnedUnordered = false;
  private readonly warnedMalformed = new Set<string>();
  /**
   * The last delivery of each (consumer, key) running or waiting in this process. Deliveries of
   * one key wait here, not on the key's row lock: a waiter there holds a pooled connection, and a
   * few deliveries of a key whose head is slow would take the whole pool, stalling every other
   * key and unkeyed delivery. The row lock still orders deliveries across processes.
   */
  private readonly turns = new Map<string, Promise<void>>();

  constructor(
    private readonly inbox: InboxBinding,
    private readonly logger: Logger,
    private readonly events: ResolvedRouterOptions['events'],
  ) {}

  /**
   * How a delivery is to be run: 'none' for an ordinary one (also every delivery when the inbox
   * store keeps no key positions, or whose attributes cannot be read), or its key and sequence.
   */
  classify(d: Delivery): Exclude<Ordering, { kind: 'malformed' }> {
    const ordering = readOrdering(d.ctx.event);
    if (ordering.kind === 'malformed') {
      // Another producer's idea of these attributes: handled, in the order it comes, rather than
      // dropped (no order can be kept on it, but nothing is lost). Said once per consumer.
      const first = !this.warnedMalformed.has(d.topic.orderingConsumer);
      if (first) this.warnedMalformed.add(d.topic.orderingConsumer);
      this.logger[first ? 'warn' : 'debug'](`an event's ordering attributes cannot be read, so it is handled in no particular order: ${ordering.reason}`, about(d, { consumer: d.topic.consumer }));
      return NONE;
    }
    if (ordering.kind === 'none' || this.inbox.store.keys !== undefined) return ordering;
    if (!this.warnedUnordered) {
      this.warnedUnordered = true;
      this.logger.warn('the inbox store keeps no ordering key positions (InboxStore.keys): keyed deliveries are handled in the order they arrive', about(d));
    }
    return NONE;
  }

  /**
   * Runs one keyed delivery; `verdict` is what its validation hook decided (RETRY, or DROP for
   * data that can never succeed), if it did not accept it. Never throws.
   */
  async deliver(d: Delivery, ordering: { key: string; sequence: number }, verdict: DaprStatus | undefined): Promise<DaprStatus> {
    if (verdict === RETRY) return RETRY;
    const id = `${d.topic.orderingConsumer}\u0000${ordering.key}`;
    const before = this.turns.get(id);
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    const last = before ? before.then(() => mine) : mine;
    this.turns.set(id, last);
    try {
      await before;
      return await this.deliverInTurn(d, ordering, verdict);
    } finally {
      done();
      if (this.turns.get(id) === last) this.turns.delete(id);
    }
  }

  /** deliver(), once the deliveries of the key before it in this process are done. */
  private async deliverInTurn(d: Delivery, ordering: { key: string; sequence: number }, verdict: DaprStatus | undefined): Promise<DaprStatus> {
    const { transactions, store, now } = this.inbox;
    const keys = store.keys!;
    const consumer = d.topic.consumer;
    const position = d.topic.orderingConsumer;
    const { key, sequence: s } = ordering;
    let skipped = false;
    try {
      return await transactions.detached(() =>
        transactions.run(async (tx) => {
          const at = await keys.lock(position, key, tx, now());
          const last = at.lastSequence;
          if (s <= last) return this.behind(d, keys, key, s, tx);
          // A key this consumer never handled, with orderingStart 'first-delivered': it starts here.
          if (s > last + 1 && last === 0 && at.waitingSince === null && d.topic.orderingStart === 'first-delivered') {
            this.logger.debug(`first event of a key this consumer never handled: it starts at sequence ${s}`, about(d, { consumer, key, sequence: s }));
            return this.head(d, keys, key, s, verdict, tx);
          }
          if (s > last + 1) {
            const t = now();
            if (at.waitingSince === null) {
              await keys.set(position, key, { lastSequence: last, waitingSince: t }, tx, t);
              this.logger.debug(`keyed event ahead of its turn (waiting for sequence ${last + 1}); answering RETRY`, about(d, { consumer, key, sequence: s }));
              return RETRY;
            }
            if (t - at.waitingSince < d.topic.orderingGapTimeoutMs) {
              this.logger.debug(`keyed event ahead of its turn (waiting for sequence ${last + 1}); answering RETRY`, about(d, { consumer, key, sequence: s }));
              return RETRY;
            }
            skipped = true;
            this.logger.warn(`ordering key gave up waiting for sequence${s - 1 > last + 1 ? `s ${last + 1} to ${s - 1}` : ` ${last + 1}`}: skipped`, about(d, { consumer, key, from: last + 1, to: s - 1 }));
            this.report('orderingGap', { consumer, key, from: last + 1, to: s - 1 });
          }
          return this.head(d, keys, key, s, verdict, tx);
        }),
      );
    } catch (err) {
      if (!(err instanceof HeadStopped)) return answerInboxFailure(err, d, this.logger);
      // The database lost the whole transaction (or could not go back to the savepoint): note
      // what the head's outcome means for its key in a transaction of its own.
      const status = answerFor(err.outcome, d, this.logger);
      await transactions
        .detached(() =>
          transactions.run(async (tx) => {
            const at = await keys.lock(position, key, tx, now());
            await keys.set(position, key, afterFailure(status, s, at, skipped, now()), tx, now());
          }),
        )
        .catch((e: unknown) => this.logger.warn(`could not record the outcome of a keyed event on its key: ${errorMessage(e)}`, about(d, { consumer, key, sequence: s, code: errorCode(e) })));
      return status;
    }
  }

  /** s <= L: a duplicate (SUCCESS) or an event whose sequence was skipped (DROP). */
  private async behind(d: Delivery, keys: InboxKeyStore, key: string, s: number, tx: StoreTransaction): Promise<DaprStatus> {
    const consumer = d.topic.consumer;
    if (await keys.handled(consumer, inboxKey(d.ctx.id), tx)) {
      countDuplicate(d.ctx);
      this.logger.debug('duplicate delivery answered SUCCESS without running the handler', about(d, { consumer, key, sequence: s }));
      return SUCCESS;
    }
    this.logger.warn('keyed event arrived after its key moved past it (its sequence was skipped, or dropped); answering DROP', about(d, { consumer, key, sequence: s }));
    this.report('orderingLate', { consumer, key, sequence: s, id: d.ctx.id });
    return DROP;
  }

  /** s is the next in line: the inbox record, the handler, and the key's new position, in `tx`. */
  private async head(d: Delivery, keys: InboxKeyStore, key: string, s: number, verdict: DaprStatus | undefined, tx: StoreTransaction): Promise<DaprStatus> {
    const { transactions, store, now } = this.inbox;
    const consumer = d.topic.consumer;
    const position = d.topic.orderingConsumer;
    const handled: KeyPosition = { lastSequence: s, waitingSince: null };
    // Rejected by the validation hook (already logged): the key moves on.
    if (verdict === DROP) {
      await keys.set(position, key, handled, tx, now());
      return DROP;
    }
    const undo = transactions.savepoint ? await transactions.savepoint(tx) : undefined;
    if (!(await store.record(consumer, inboxKey(d.ctx.id), tx, now()))) {
      // Handled before, out of this key's order (delivered once without its attributes, say).
      await keys.set(position, key, handled, tx, now());
      countDuplicate(d.ctx);
      this.logger.debug('duplicate delivery answered SUCCESS without running the handler', about(d, { consumer, key, sequence: s }));
      return SUCCESS;
    }
    const outcome = await this.invoke(d, tx);
    if (outcome.status === SUCCESS) {
      await keys.set(position, key, handled, tx, now());
      return SUCCESS;
    }
    if (errorCode(outcome.error) === IN_FAILED_TRANSACTION) throw outcome.error;
    const undone = undo !== undefined && (await undo().then(() => true, () => false));
    if (!undone) throw new HeadStopped(outcome);
    const status = answerFor(outcome, d, this.logger);
    await keys.set(position, key, afterFailure(status, s, { lastSequence: s - 1, waitingSince: null }, true, now()), tx, now());
    return status;
  }

  /** Emits an ordering event; a listener that throws is logged, and never fails the delivery. */
  private report<K extends 'orderingGap' | 'orderingLate'>(name: K, ...args: OutboxEventMap[K]): void {
    try {
      this.events?.emit(name, ...args);
    } catch (err) {
      this.logger.warn(`an '${name}' listener failed: ${errorMessage(err)}`);
    }
  }

  /** The handler, in the delivery's transaction. */
  private async invoke(d: Delivery, tx: StoreTransaction): Promise<HandlerOutcome> {
    d.ctx.transaction = tx;
    try {
      return await this.inbox.transactions.bind(tx, () => invokeHandler(d));
    } finally {
      d.ctx.transaction = undefined;
    }
  }
}

/**
 * A key's position once its head s failed: after RETRY it waits for s again, with the gap timer
 * restarted (and keeps a skip that brought s to the head); after DROP it moves past s. Never
 * moves a key back (another delivery may have moved it on meanwhile).
 */
function afterFailure(status: DaprStatus, s: number, at: KeyPosition, skipped: boolean, now: number): KeyPosition {
  if (status === DROP) return at.lastSequence >= s ? at : { lastSequence: s, waitingSince: null };
  if (at.lastSequence >= s) return at;
  return { lastSequence: skipped ? Math.max(at.lastSequence, s - 1) : at.lastSequence, waitingSince: now };
}
