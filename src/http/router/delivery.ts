/**
 * One delivery (a single event, or one entry of a bulk delivery) through validation, the inbox
 * and the handler, to the status the sidecar gets.
 *
 * With the inbox on, the handler runs in a transaction that first records (consumer, event id):
 * a duplicate answers SUCCESS without running the handler; any outcome but SUCCESS rolls back
 * the record together with the handler's writes, so a retry runs the handler again. Deliveries
 * that arrive while such a transaction is open share the next one (delivery-groups.ts). Two
 * deliveries of one id at once are decided by the inbox's primary key: the second insert waits
 * for the first transaction and then sees a duplicate (SUCCESS), or, when the database gives up
 * on the wait (a lock wait timeout, a deadlock), the delivery answers RETRY. Never a second
 * effect.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { DropError } from '../../errors';
import { errorMessage, type Logger } from '../../core/logger';
import type { InboxStore } from '../../ports/inbox-store';
import type { TransactionPort } from '../../ports/transactions';
import type { ReadEvent } from './cloudevent';
import { DROP, RETRY, SUCCESS, type DaprStatus } from './statuses';
import type { RegisteredTopic } from './topic-registration';
import type { DeliveryContext, TopicHandler } from './types';
import { runValidator } from './validation';
import { traceProcess } from '../../core/telemetry/spans';

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

/** A delivery past validation, ready for its handler. */
export interface Delivery {
  topic: RegisteredTopic;
  handler: TopicHandler;
  /** The data the handler gets (as the validation hook returned it). */
  data: unknown;
  ctx: DeliveryContext;
}

/** How a handler ended: its status, and the error it threw, if it did. */
export interface HandlerOutcome {
  status: DaprStatus;
  /** Set when the handler threw (DropError for DROP, anything else for RETRY). */
  error?: unknown;
}

const SUCCEEDED: HandlerOutcome = Object.freeze({ status: SUCCESS });

/**
 * Runs the delivery's handler once, in whatever transaction is ambient. Never throws. This is
 * the one place a handler is called.
 */
export async function invokeHandler(d: Delivery): Promise<HandlerOutcome> {
  try {
    const result = await traceProcess(d.ctx, () => d.handler(d.data, d.ctx));
    return result === RETRY || result === DROP ? { status: result as DaprStatus } : SUCCEEDED;
  } catch (error) {
    return { status: isDropError(error) ? DROP : RETRY, error };
  }
}

/**
 * Builds the handler's context and runs the validation hook: a Delivery, or the status that
 * ends it here (DROP for data that can never succeed, RETRY when the hook asks for it).
 */
export async function prepareDelivery(input: DeliveryInput, inboxOn: boolean, logger: Logger): Promise<Delivery | DaprStatus> {
  const d = buildDelivery(input, inboxOn);
  const verdict = await validateDelivery(d, logger);
  return verdict ?? d;
}

/** The delivery with its handler's context, before validation. */
export function buildDelivery(input: DeliveryInput, inboxOn: boolean): Delivery {
  const { topic, read } = input;
  const ctx: DeliveryContext = {
    event: read.event,
    id: read.event.id,
    topic: topic.topic,
    pubsubName: topic.pubsubName,
    route: input.route,
    headers: input.headers,
    transaction: undefined,
    consumer: inboxOn ? topic.consumer : undefined,
  };
  if (input.rawBody !== undefined) ctx.rawBody = input.rawBody;
  if (input.bulk !== undefined) ctx.bulk = input.bulk;
  return { topic, handler: input.handler, data: read.data, ctx };
}

/**
 * Runs the topic's validation hook on `d` (replacing its data by what the hook returned):
 * undefined when the delivery goes on, else the status that ends it.
 */
export async function validateDelivery(d: Delivery, logger: Logger): Promise<DaprStatus | undefined> {
  if (d.topic.validate === undefined) return undefined;
  const v = await runValidator(d.topic.validate, d.data, d.ctx);
  if (v.ok) {
    d.data = v.data;
    return undefined;
  }
  if (v.retry) {
    logger.info(`the validation hook asked for a retry: ${v.reason}`, about(d));
    return RETRY;
  }
  logger.warn(`dropping a message that failed validation: ${v.reason}`, about(d));
  return DROP;
}

/** The status a handler's outcome answers, logged when it is not SUCCESS. */
export function answerFor(outcome: HandlerOutcome, d: Delivery, logger: Logger): DaprStatus {
  if (outcome.status === SUCCESS) return SUCCESS;
  if (outcome.error === undefined) logger.info(`handler answered ${outcome.status}`, about(d));
  else if (outcome.status === DROP) logger.warn(`handler dropped the message: ${errorMessage(outcome.error)}`, about(d));
  else logger.error(`handler failed; answering RETRY: ${errorMessage(outcome.error)}`, about(d, { error: outcome.error }));
  return outcome.status;
}

/** RETRY for a delivery whose inbox transaction failed (BEGIN, the inbox insert, COMMIT). */
export function answerInboxFailure(err: unknown, d: Delivery, logger: Logger): DaprStatus {
  logger.warn(`inbox transaction failed; answering RETRY: ${errorMessage(err)}`, about(d, { consumer: d.topic.consumer, code: errorCode(err) }));
  return RETRY;
}

/** What the log says about a delivery. */
export function about(d: Delivery, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    pubsubName: d.topic.pubsubName,
    topic: d.topic.topic,
    route: d.ctx.route,
    id: d.ctx.id,
    ...(d.ctx.bulk ? { entryId: d.ctx.bulk.entryId } : {}),
    ...extra,
  };
}

/** DropError, also from another copy of this library (the ESM and CJS builds are two classes). */
function isDropError(err: unknown): boolean {
  return err instanceof DropError || (err instanceof Error && err.name === 'DropError');
}

/** The driver's code of a database error (ER_LOCK_DEADLOCK, SQLITE_BUSY, ...), for the log. */
export function errorCode(err: unknown): string | undefined {
  const parent = (err as { parent?: { code?: unknown } } | undefined)?.parent;
  const code = parent?.code ?? (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
