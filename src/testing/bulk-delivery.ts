/**
 * Bulk subscribe (dapr pkg/runtime/subscription/bulksubscription.go and the default bulk
 * subscriber): messages are batched per subscription until maxMessagesCount or
 * maxAwaitDurationMs, each gets an entryId, entries are grouped by route and POSTed as
 *
 *   {"entries":[{"entryId","event","metadata","contentType"}],"id","metadata","pubsubname","topic","type"}
 *
 * with `event` the CloudEvent object (or the base64 bytes for rawPayload). The app answers
 * per entry; RETRY entries are resent under the resiliency policy, then dead-lettered or dropped.
 * With faults.reorderDeliveries an entry the app acked may come back in a later batch, once.
 */
import { randomUUID } from 'node:crypto';
import { appEndpoint } from './app-client';
import { AnswerVerdict, readBulkAnswer } from './app-response';
import type { AttachedApp } from './broker';
import { CLOUDEVENT_CONTENT_TYPE, JSON_CONTENT_TYPE, OCTET_STREAM_CONTENT_TYPE } from './content-type';
import type { BrokerMessage, EmulatorState } from './emulator-state';
import { deliveryHeaders, findRoute, readStoredEvent, recordDelivery } from './delivery-common';
import { DEFAULT_BULK_EVENT_TYPE, hasExpired } from './envelope';
import { messageOf } from './errors';
import { goQuote, GoValue, marshalGo } from './go-json';
import type { LateDelivery } from './delivery';
import { sleep } from './in-flight';
import { readRawPayload } from './request-metadata';
import { CompiledSubscription, DEFAULT_BULK_MAX_AWAIT_MS, DEFAULT_BULK_MAX_MESSAGES } from './subscriptions';

/** A message waiting for its batch; `late` for a late duplicate (reorderDeliveries). */
interface Pending {
  msg: BrokerMessage;
  late: LateDelivery | undefined;
}

/** Collects messages of one subscription into batches. Holds an in-flight token while it has any. */
export class BulkBatcher {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private release: (() => void) | undefined;

  constructor(
    private readonly core: EmulatorState,
    private readonly app: AttachedApp,
    private readonly sub: CompiledSubscription,
  ) {}

  add(msg: BrokerMessage, late?: LateDelivery): void {
    this.pending.push({ msg, late });
    if (!this.release) this.release = this.core.inFlight.enter();
    const settings = this.sub.bulkSubscribe;
    const max = settings?.maxMessagesCount ?? DEFAULT_BULK_MAX_MESSAGES;
    if (this.pending.length >= max) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), settings?.maxAwaitDurationMs ?? DEFAULT_BULK_MAX_AWAIT_MS);
  }

  /** Sends what is pending now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    const release = this.release;
    this.release = undefined;
    if (batch.length > 0) this.core.inFlight.track(() => deliverBulk(this.core, this.app, this.sub, batch));
    release?.();
  }

  /** Abandons what is pending (emulator stopping). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = [];
    this.release?.();
    this.release = undefined;
  }
}

interface Entry {
  entryId: string;
  msg: BrokerMessage;
  late: LateDelivery | undefined;
  /** What goes in the entry's `event`: the CloudEvent object, or the base64 string when raw. */
  event: GoValue;
  contentType: string;
  eventId: string | undefined;
}

/** Delivers one batch; never throws. */
export async function deliverBulk(core: EmulatorState, app: AttachedApp, sub: CompiledSubscription, msgs: Pending[]): Promise<void> {
  try {
    await runBulk(core, app, sub, msgs);
  } catch (err) {
    core.options.logger.warn(`app ${app.appId}: bulk delivery on ${sub.topic} failed unexpectedly: ${messageOf(err)}`);
  }
}

async function runBulk(core: EmulatorState, app: AttachedApp, sub: CompiledSubscription, msgs: Pending[]): Promise<void> {
  const failed: Array<{ entry: Pick<Entry, 'msg' | 'eventId'>; reason: string }> = [];
  const giveUp = (): void => {
    for (const { entry, reason } of failed) {
      if (sub.deadLetterTopic) core.broker.deadLetter(app, sub, entry.msg, entry.eventId, reason);
      else core.broker.drop(app, entry.msg, entry.eventId, reason);
    }
  };
  const early = ({ msg, late }: Pending, entryId: string, eventId: string | undefined, outcome: 'RETRY' | 'DROP', error: string): void =>
    recordDelivery(core, app, msg, { route: '', eventId, attempt: (late?.attemptsBefore ?? 0) + 1, httpStatus: undefined, outcome, error, entryId, late: late !== undefined });

  const raw = readRawPayload(sub.metadata);
  if (!raw.ok) {
    const error = `error deserializing pubsub metadata: ${raw.error}`;
    for (const pending of msgs) {
      const { msg } = pending;
      early(pending, randomUUID(), msg.eventId, 'RETRY', error);
      failed.push({ entry: { msg, eventId: msg.eventId }, reason: error });
    }
    return giveUp();
  }

  const byPath = new Map<string, Entry[]>();
  for (const pending of msgs) {
    const { msg, late } = pending;
    const entryId = randomUUID();
    let entry: Entry;
    let matchElement: unknown;
    if (raw.raw) {
      entry = { entryId, msg, late, event: msg.data.toString('base64'), contentType: OCTET_STREAM_CONTENT_TYPE, eventId: undefined };
      matchElement = msg.data.toString('utf8');
    } else {
      const stored = readStoredEvent(msg.data);
      if (!stored.ok) {
        const error = `error deserializing one of the messages in bulk cloud event: ${stored.error}`;
        early(pending, entryId, msg.eventId, 'RETRY', error);
        failed.push({ entry: { msg, eventId: msg.eventId }, reason: error });
        continue;
      }
      entry = { entryId, msg, late, event: stored.value, contentType: CLOUDEVENT_CONTENT_TYPE, eventId: stored.eventId };
      matchElement = stored.plain;
      if (hasExpired(stored.plain, core.now())) {
        early(pending, entryId, entry.eventId, 'DROP', 'dropping expired pub/sub event');
        if (sub.deadLetterTopic) core.broker.deadLetter(app, sub, msg, entry.eventId, 'expired');
        else core.broker.drop(app, msg, entry.eventId, 'expired');
        continue;
      }
    }
    const route = findRoute(sub, matchElement);
    if (!route.ok) {
      const error = `error finding matching route for event in bulk subscribe: ${route.error}`;
      early(pending, entryId, entry.eventId, 'RETRY', error);
      failed.push({ entry, reason: error });
      continue;
    }
    if (route.path === undefined) {
      early(pending, entryId, entry.eventId, 'DROP', 'no matching route; message acked without delivery');
      if (sub.deadLetterTopic) core.broker.deadLetter(app, sub, msg, entry.eventId, 'no matching route');
      continue;
    }
    const list = byPath.get(route.path) ?? [];
    list.push(entry);
    byPath.set(route.path, list);
  }

  for (const [path, entries] of byPath) {
    const outcome = await sendWithRetries(core, app, sub, path, entries);
    if (outcome === 'stopped') return;
    failed.push(...outcome);
  }
  giveUp();
}

async function sendWithRetries(
  core: EmulatorState,
  app: AttachedApp,
  sub: CompiledSubscription,
  path: string,
  entries: Entry[],
): Promise<Array<{ entry: Entry; reason: string }> | 'stopped'> {
  const policy = core.options.resiliency;
  const url = appEndpoint(app.appUrl, path);
  const headers = deliveryHeaders(app, sub, JSON_CONTENT_TYPE);
  let remaining = entries;
  let lastErrors = new Map<string, string>();
  for (let i = 0; i <= policy.retries && remaining.length > 0; i++) {
    if (i > 0 && !(await sleep(policy.intervalMs, core.stopSignal))) return 'stopped';
    if (!(await core.faults.brokerDelay())) return 'stopped';
    const ids = remaining.map((e) => e.entryId);
    let status: number | undefined;
    let verdicts: Map<string, AnswerVerdict>;
    try {
      const answer = await core.appClient.request({ method: 'POST', url, headers, body: bulkBody(sub, remaining) });
      status = answer.status;
      verdicts = readBulkAnswer(ids, answer.status, answer.body).outcomes;
    } catch (err) {
      if (core.stopped) return 'stopped';
      verdicts = readBulkAnswer(ids, undefined, Buffer.alloc(0), messageOf(err)).outcomes;
    }
    const retry: Entry[] = [];
    lastErrors = new Map();
    for (const entry of remaining) {
      const verdict = verdicts.get(entry.entryId)!;
      const attempt = (entry.late?.attemptsBefore ?? 0) + i + 1;
      recordDelivery(core, app, entry.msg, {
        route: path,
        eventId: entry.eventId,
        attempt,
        httpStatus: status,
        outcome: verdict.outcome,
        error: verdict.error,
        entryId: entry.entryId,
        late: entry.late !== undefined,
      });
      if (verdict.outcome === 'SUCCESS') {
        if (!entry.late) core.broker.redeliverLate(app, sub, entry.msg, attempt);
      } else if (verdict.outcome === 'RETRY') {
        retry.push(entry);
        lastErrors.set(entry.entryId, verdict.error ?? 'RETRY');
      } else if (verdict.outcome === 'DROP' && status !== 404 && sub.deadLetterTopic) {
        // A per-entry DROP goes to the dead-letter topic; a 404 for the whole request does not.
        core.broker.deadLetter(app, sub, entry.msg, entry.eventId, verdict.error ?? 'DROP');
      }
    }
    remaining = retry;
  }
  return remaining.map((entry) => ({
    entry,
    reason: `retries exhausted after ${policy.retries + 1} attempt(s): ${lastErrors.get(entry.entryId) ?? 'RETRY'}`,
  }));
}

/**
 * The bulk request body. The envelope is a Go map (keys sorted), the entries Go structs
 * (fields in declaration order: entryId, event, metadata, contentType). The event went through
 * json.Unmarshal into interface{}, so its numbers are float64.
 */
function bulkBody(sub: CompiledSubscription, entries: Entry[]): Buffer {
  const items = entries.map(
    (e) =>
      `{"entryId":${goQuote(e.entryId)},"event":${marshalGo(e.event, { float64Numbers: true })},"metadata":${marshalGo(sub.metadata)},"contentType":${goQuote(e.contentType)}}`,
  );
  const text =
    `{"entries":[${items.join(',')}],"id":${goQuote(randomUUID())},"metadata":${marshalGo({ pubsubName: sub.pubsubName })},` +
    `"pubsubname":${goQuote(sub.pubsubName)},"topic":${goQuote(sub.topic)},"type":${goQuote(DEFAULT_BULK_EVENT_TYPE)}}`;
  return Buffer.from(text, 'utf8');
}
