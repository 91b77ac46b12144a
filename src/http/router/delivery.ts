/**
 * One delivery (a single event, or one entry of a bulk delivery) through validation, the inbox
 * and the handler, to the status the sidecar gets.
 *
 * With the inbox on, the handler runs in ONE transaction that first records (consumer, event
 * id): a duplicate answers SUCCESS without running the handler; any outcome but SUCCESS rolls
 * back the record together with the handler's writes, so a retry runs the handler again. Two
 * deliveries of one id at once are decided by the inbox's primary key: the second insert waits
 * for the first transaction and then sees a duplicate (SUCCESS), or, when the database gives
 * up on the wait (a lock wait timeout, a deadlock), the delivery answers RETRY. Never a second
 * effect.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { DropError } from '../../errors';
import { errorMessage, type Logger } from '../../core/logger';
import { countDuplicate, traceProcess } from '../../core/telemetry/spans';
import type { InboxStore } from '../../ports/inbox-store';
import type { TransactionPort } from '../../ports/transactions';
import type { ReadEvent } from './cloudevent';
import { DROP, RETRY, SUCCESS, type DaprStatus } from './statuses';
import { inboxKey, type RegisteredTopic } from './topic-registration';
import type { DeliveryContext, TopicHandler } from './types';
import { runValidator } from './validation';

/** Where the inbox lives: the store, and the transactions its records and the handlers run in. */
export interface InboxBinding {
  store: InboxStore;
  transactions: TransactionPort;
  /** Epoch milliseconds, for `handled_time`. */
  now: () => number;
}

export interface DeliveryInput {
  topic: RegisteredTopic;
  handler: TopicHandler;
  route: string;
  read: ReadEvent;
  headers: IncomingHttpHeaders;
  rawBody?: Buffer;
  bulk?: { entryId: string; metadata: Record<string, unknown> };
}

export interface DeliveryDeps {
  inbox: InboxBinding | undefined;
  logger: Logger;
}

/** Ends the transaction with a status other than SUCCESS (rolls back). */
class Outcome extends Error {
  constructor(readonly status: DaprStatus) {
    super(`handler answered ${status}`);
  }
}

/** An error the handler threw, told apart from failures of the inbox transaction itself. */
class HandlerFailure extends Error {
  constructor(readonly error: unknown) {
    super(errorMessage(error));
  }
}

/** Runs one delivery. Never throws: every failure becomes RETRY or DROP, and is logged. */
export async function runDelivery(input: DeliveryInput, deps: DeliveryDeps): Promise<DaprStatus> {
  const { topic, read } = input;
  const ctx: DeliveryContext = {
    event: read.event,
    id: read.event.id,
    topic: topic.topic,
    pubsubName: topic.pubsubName,
    route: input.route,
    headers: input.headers,
    transaction: undefined,
    consumer: deps.inbox ? topic.consumer : undefined,
  };
  if (input.rawBody !== undefined) ctx.rawBody = input.rawBody;
  if (input.bulk !== undefined) ctx.bulk = input.bulk;
  const about = (extra: Record<string, unknown> = {}) => ({
    pubsubName: topic.pubsubName,
    topic: topic.topic,
    route: input.route,
    id: ctx.id,
    ...(input.bulk ? { entryId: input.bulk.entryId } : {}),
    ...extra,
  });

  let data = read.data;
  if (topic.validate !== undefined) {
    const v = await runValidator(topic.validate, data, ctx);
    if (!v.ok) {
      if (v.retry) {
        deps.logger.info(`the validation hook asked for a retry: ${v.reason}`, about());
        return RETRY;
      }
      deps.logger.warn(`dropping a message that failed validation: ${v.reason}`, about());
      return DROP;
    }
    data = v.data;
  }

  const invoke = async (): Promise<void> => {
    let result: unknown;
    try {
      result = await traceProcess(ctx, () => input.handler(data, ctx));
    } catch (err) {
      if (isDropError(err)) throw err;
      throw new HandlerFailure(err);
    }
    if (result === RETRY || result === DROP) throw new Outcome(result as DaprStatus);
  };

  try {
    if (!deps.inbox) {
      await invoke();
      return SUCCESS;
    }
    const { transactions, store, now } = deps.inbox;
    const duplicate = await transactions.run(async (tx) => {
      ctx.transaction = tx;
      if (!(await store.record(topic.consumer, inboxKey(ctx.id), tx, now()))) return true;
      await invoke();
      return false;
    });
    if (duplicate) countDuplicate(ctx);
    if (duplicate) deps.logger.debug('duplicate delivery answered SUCCESS without running the handler', about({ consumer: topic.consumer }));
    return SUCCESS;
  } catch (err) {
    if (err instanceof Outcome) {
      deps.logger.info(`handler answered ${err.status}`, about());
      return err.status;
    }
    if (isDropError(err)) {
      deps.logger.warn(`handler dropped the message: ${errorMessage(err)}`, about());
      return DROP;
    }
    if (err instanceof HandlerFailure) {
      deps.logger.error(`handler failed; answering RETRY: ${err.message}`, about({ error: err.error }));
      return RETRY;
    }
    deps.logger.warn(`inbox transaction failed; answering RETRY: ${errorMessage(err)}`, about({ consumer: topic.consumer, code: errorCode(err) }));
    return RETRY;
  } finally {
    ctx.transaction = undefined;
  }
}

/** DropError, also from another copy of this library (the ESM and CJS builds are two classes). */
function isDropError(err: unknown): boolean {
  return err instanceof DropError || (err instanceof Error && err.name === 'DropError');
}

/** The driver's code of a database error (ER_LOCK_DEADLOCK, SQLITE_BUSY, ...), for the log. */
function errorCode(err: unknown): string | undefined {
  const parent = (err as { parent?: { code?: unknown } } | undefined)?.parent;
  const code = parent?.code ?? (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
