/**
 * One message to one app (consumer group), as daprd's subscription handler does it:
 * read the stored bytes (as a CloudEvent, or wrapped with FromRawPayload for rawPayload
 * subscriptions), drop it when expired, pick the route, POST it, read the answer, retry under
 * the resiliency policy, then dead-letter the ORIGINAL bytes or hand the message back to the
 * broker (redelivery option) and finally record it as dropped.
 *
 * With faults.reorderDeliveries a delivery may first be held back, and an acked message may be
 * handed back to the broker for one late duplicate.
 */
import { appEndpoint } from './app-client';
import { readAnswer } from './app-response';
import type { AttachedApp } from './broker';
import { CLOUDEVENT_CONTENT_TYPE } from './content-type';
import type { BrokerMessage, EmulatorState } from './emulator-state';
import { deliveryHeaders, findRoute, readStoredEvent, recordDelivery, traceOf } from './delivery-common';
import { fromRawPayload, hasExpired } from './envelope';
import { messageOf } from './errors';
import { marshalGo, toPlain } from './go-json';
import { sleep } from './in-flight';
import { readRawPayload } from './request-metadata';
import { CompiledSubscription } from './subscriptions';

type RoundResult = { kind: 'done' } | { kind: 'stopped' } | { kind: 'failed'; reason: string; eventId: string | undefined };

/** A late duplicate of a message the app acked (reorderDeliveries): its attempts go on from the acked one. */
export interface LateDelivery {
  attemptsBefore: number;
}

/** Runs until the message is acked, dead-lettered or dropped. Never throws. */
export async function deliverSingle(core: EmulatorState, app: AttachedApp, sub: CompiledSubscription, msg: BrokerMessage, late?: LateDelivery): Promise<void> {
  try {
    if (!late) {
      // Each delivery runs on its own, so a held one is overtaken by the ones published after it.
      const hold = core.faults.takeHold();
      if (hold !== undefined && !(await core.faults.hold(hold))) return;
    }
    let attempt = late?.attemptsBefore ?? 0;
    const nextAttempt = (): number => ++attempt;
    const rounds = core.options.redelivery.retries + 1;
    let last: RoundResult = { kind: 'done' };
    for (let round = 0; round < rounds; round++) {
      if (round > 0 && !(await sleep(core.options.redelivery.intervalMs, core.stopSignal))) return;
      last = await deliveryRound(core, app, sub, msg, nextAttempt, late !== undefined);
      if (last.kind !== 'failed') return;
    }
    if (last.kind === 'failed') core.broker.drop(app, msg, last.eventId, last.reason);
  } catch (err) {
    // A bug here must not crash the host process: report it and give the message up.
    core.options.logger.warn(`app ${app.appId}: delivery of ${msg.messageId} failed unexpectedly: ${messageOf(err)}`);
  }
}

async function deliveryRound(
  core: EmulatorState,
  app: AttachedApp,
  sub: CompiledSubscription,
  msg: BrokerMessage,
  nextAttempt: () => number,
  late: boolean,
): Promise<RoundResult> {
  let eventId = msg.eventId;
  /** A failure before any HTTP call: dead-letter it, or give it back to the broker. */
  const failEarly = (error: string): RoundResult => {
    recordDelivery(core, app, msg, { route: '', eventId, attempt: nextAttempt(), httpStatus: undefined, outcome: 'RETRY', error, late });
    if (sub.deadLetterTopic) {
      core.broker.deadLetter(app, sub, msg, eventId, error);
      return { kind: 'done' };
    }
    return { kind: 'failed', reason: error, eventId };
  };

  const raw = readRawPayload(sub.metadata);
  if (!raw.ok) return failEarly(`error deserializing pubsub metadata: ${raw.error}`);

  let event: unknown;
  let body: Buffer;
  if (raw.raw) {
    const wrapped = fromRawPayload(msg.data, msg.topic, msg.pubsubName);
    body = Buffer.from(marshalGo(wrapped), 'utf8');
    event = toPlain(wrapped);
    eventId = wrapped.get('id') as string;
  } else {
    const stored = readStoredEvent(msg.data);
    if (!stored.ok) return failEarly(`error deserializing cloud event in pubsub ${msg.pubsubName} and topic ${msg.topic}: ${stored.error}`);
    body = msg.data;
    event = stored.plain;
    eventId = stored.eventId;
  }

  if (hasExpired(event, core.now())) {
    const error = 'dropping expired pub/sub event';
    recordDelivery(core, app, msg, { route: '', eventId, attempt: nextAttempt(), httpStatus: undefined, outcome: 'DROP', error, late });
    if (sub.deadLetterTopic) core.broker.deadLetter(app, sub, msg, eventId, 'expired');
    else core.broker.drop(app, msg, eventId, 'expired');
    return { kind: 'done' };
  }

  const route = findRoute(sub, event);
  if (!route.ok) return failEarly(`error finding matching route for event ${eventId ?? ''}: ${route.error}`);
  if (route.path === undefined) {
    const error = 'no matching route; message acked without delivery';
    recordDelivery(core, app, msg, { route: '', eventId, attempt: nextAttempt(), httpStatus: undefined, outcome: 'DROP', error, late });
    if (sub.deadLetterTopic) core.broker.deadLetter(app, sub, msg, eventId, 'no matching route');
    return { kind: 'done' };
  }

  const url = appEndpoint(app.appUrl, route.path);
  const headers = deliveryHeaders(app, sub, CLOUDEVENT_CONTENT_TYPE, traceOf(event));
  const policy = core.options.resiliency;
  let lastError = '';
  for (let i = 0; i <= policy.retries; i++) {
    if (i > 0 && !(await sleep(policy.intervalMs, core.stopSignal))) return { kind: 'stopped' };
    if (!(await core.faults.brokerDelay())) return { kind: 'stopped' };
    const attempt = nextAttempt();
    let httpStatus: number | undefined;
    let verdict;
    try {
      const answer = await core.appClient.request({ method: 'POST', url, headers, body });
      httpStatus = answer.status;
      verdict = readAnswer(answer.status, answer.body);
    } catch (err) {
      if (core.stopped) return { kind: 'stopped' };
      verdict = readAnswer(undefined, Buffer.alloc(0), messageOf(err));
    }
    recordDelivery(core, app, msg, { route: route.path, eventId, attempt, httpStatus, outcome: verdict.outcome, error: verdict.error, late });
    if (verdict.outcome === 'SUCCESS') {
      if (!late) core.broker.redeliverLate(app, sub, msg, attempt);
      return { kind: 'done' };
    }
    if (verdict.outcome === 'DROP') {
      if (sub.deadLetterTopic) core.broker.deadLetter(app, sub, msg, eventId, verdict.error ?? 'DROP');
      return { kind: 'done' };
    }
    lastError = verdict.error ?? 'RETRY';
  }
  const reason = `retries exhausted after ${policy.retries + 1} attempt(s): ${lastError}`;
  if (sub.deadLetterTopic) {
    core.broker.deadLetter(app, sub, msg, eventId, reason);
    return { kind: 'done' };
  }
  return { kind: 'failed', reason, eventId };
}
