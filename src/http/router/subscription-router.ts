/**
 * The subscription router: `GET /dapr/subscribe`, one route per topic (and per routing rule),
 * the app API token, CloudEvent parsing, the inbox and Dapr's answers
 * (docs/dapr-pubsub-contract.md, sections 4 and 5).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type NextFunction, type Router } from 'express';
import { OutboxConfigError } from '../../errors';
import { errorMessage } from '../../core/logger';
import { tokenChecker } from './api-token';
import { readBulk } from './bulk';
import { isBinaryMode, isBulkEnvelope, jsonBody, readSingleDelivery, readStructured, type Parsed, type ReadEvent } from './cloudevent';
import { answerFor, buildDelivery, invokeHandler, prepareDelivery, validateDelivery, type Delivery, type DeliveryInput } from './delivery';
import { DeliveryGroups } from './delivery-groups';
import { OrderedDeliveries } from './ordering';
import { readRequestBody } from './request-body';
import { commitRequestUnitOfWork } from './commit-request-unit-of-work';
import { canonicalPath, SUBSCRIBE_PATH } from './route-paths';
import { resolveRouterOptions, type InboxFactory, type ResolvedRouterOptions, type SubscriptionRouterOptions } from './router-options';
import { answerBulk, answerMethodNotAllowed, answerNotFound, answerStatus, answerUnauthorized, DROP, RETRY, sendJson, type BulkEntryStatus, type DaprStatus } from './statuses';
import { registerTopic, subscriptionItem, type RegisteredTopic } from './topic-registration';
import type { DaprSubscription, TopicHandler, TopicOptions } from './types';

/** An express Router with `topic()` added. Mount it at the app's root: daprd calls `/dapr/subscribe` there. */
export interface SubscriptionRouter extends Router {
  /**
   * Subscribes `handler` to `topic` on the pubsub component `pubsubName`. Returns the router.
   * Throws OutboxConfigError for invalid options, a topic subscribed twice or a route taken.
   */
  topic<T = any>(pubsubName: string, topic: string, handler: TopicHandler<T>, options?: TopicOptions): SubscriptionRouter;
  /** The `/dapr/subscribe` items, as served at the root. */
  subscriptions(): DaprSubscription[];
}

/** How deliveries run with the inbox on: grouped (delivery-groups.ts), or one by one in their key's order (ordering.ts). */
interface Runners {
  groups: DeliveryGroups | undefined;
  ordered: OrderedDeliveries | undefined;
}

/** Where a route leads: the topic, and the handler of its route or rule. */
interface RouteTarget {
  topic: RegisteredTopic;
  handler: TopicHandler;
  path: string;
}

/**
 * Creates the subscription router.
 *
 * ```ts
 * const router = createSubscriptionRouter({ outbox });           // inbox on: exactly-once effects
 * router.topic('pubsub', 'RegisterUserEvent', async (event: RegisterUserEvent, ctx) => {
 *   await Welcome.create({ account: event.account });            // joins the delivery's transaction
 * });
 * app.use(router);
 * ```
 *
 * Answers: the handler resolves -> SUCCESS; it throws or returns 'RETRY' -> RETRY; it throws
 * DropError or returns 'DROP', the validation hook rejects, or the delivery is malformed ->
 * DROP (reason logged); unknown route under `routePrefix` -> 404; wrong or missing
 * `dapr-api-token` when a token is set -> 401.
 *
 * The router reads the body itself, so it works with or without `express.json()`. daprd sends
 * single deliveries as `application/cloudevents+json`, which express.json() leaves alone; bulk
 * deliveries are `application/json`: an express.json() mounted before the router parses them
 * with ITS limit (100 kB by default) and answers 413 above it (daprd retries), so mount the
 * router first, or raise that limit, when you use bulk subscribe.
 *
 * With the inbox on, an event that carries an ordering key (CloudEvent `partitionkey` and
 * `sequence`) is handled in its key's order, once: an event ahead of its turn is answered RETRY
 * until the missing ones came or `orderingGapTimeout` ran out (see ordering.ts).
 *
 * With `outbox.middleware()` mounted before the router, the request's unit of work is completed
 * before the delivery runs (see commit-request-unit-of-work.ts); deliveries run in the router's
 * own delivery transactions (see delivery-groups.ts), never in the request's.
 */
export function subscriptionRouter(options: SubscriptionRouterOptions = {}, inboxFor?: InboxFactory): SubscriptionRouter {
  const opts = resolveRouterOptions(options, inboxFor);
  const checkToken = opts.appApiToken === undefined ? undefined : tokenChecker(opts.appApiToken);
  const groups = opts.inbox && new DeliveryGroups(opts.inbox, opts.logger, opts.groupCommit);
  const ordered = opts.inbox && new OrderedDeliveries(opts.inbox, opts.logger, opts.events);
  const runners: Runners = { groups, ordered };
  const topics: RegisteredTopic[] = [];
  const routes = new Map<string, RouteTarget>();
  const prefix = `${canonicalPath(opts.routePrefix)}/`;

  const router = express.Router() as SubscriptionRouter;

  router.use(function daprSubscriptions(req: express.Request, res: express.Response, next: NextFunction): void {
    // The path as sent is usually the route's own canonical form already.
    let target = routes.get(req.path);
    const path = target ? req.path : canonicalPath(req.path);
    if (!target && path !== undefined) target = routes.get(path);
    const isSubscribe = path === SUBSCRIBE_PATH;
    if (!target && !isSubscribe && !(path !== undefined && path.startsWith(prefix))) return next();
    if (checkToken && !checkToken(req)) return answerUnauthorized(res);
    if (isSubscribe) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return answerMethodNotAllowed(res, 'GET');
      return sendJson(res, 200, topics.map((t) => subscriptionItem(t, req.baseUrl)));
    }
    if (!target) return answerNotFound(res, `no subscription at ${req.path}`);
    if (req.method !== 'POST') return answerMethodNotAllowed(res, 'POST');
    handleDelivery(req, res, target, opts, runners).catch((err: unknown) => {
      // Only a bug gets here; 500 makes daprd retry rather than lose the message.
      opts.logger.error(`subscription router failed: ${errorMessage(err)}`, { route: target.path });
      sendJson(res, 500, { error: 'INTERNAL', message: 'the subscription router failed' });
    });
  });

  router.topic = function topic<T>(pubsubName: string, name: string, handler: TopicHandler<T>, topicOptions?: TopicOptions): SubscriptionRouter {
    const t = registerTopic(pubsubName, name, handler as TopicHandler, topicOptions, { routePrefix: opts.routePrefix, consumer: opts.consumer, orderingGapTimeoutMs: opts.orderingGapTimeoutMs, orderingStart: opts.orderingStart });
    if (topics.some((x) => x.pubsubName === t.pubsubName && x.topic === t.topic)) {
      throw new OutboxConfigError('topic', `${t.pubsubName}/${t.topic}`, 'must be subscribed once per pubsub (daprd keeps one subscription per topic)');
    }
    const targets: RouteTarget[] = [{ topic: t, handler: t.handler, path: t.route }, ...t.rules.map((r) => ({ topic: t, handler: r.handler, path: r.path }))];
    const seen = new Set<string>();
    for (const target of targets) {
      const key = canonicalPath(target.path)!;
      const owner = routes.get(key);
      if (key === SUBSCRIBE_PATH || owner || seen.has(key)) {
        const by = owner ? `topic '${owner.topic.topic}' on '${owner.topic.pubsubName}'` : key === SUBSCRIBE_PATH ? 'the discovery endpoint' : `topic '${t.topic}' itself`;
        throw new OutboxConfigError('route', target.path, `of topic '${t.topic}' must be unique, but it is taken by ${by}`);
      }
      seen.add(key);
    }
    for (const target of targets) routes.set(canonicalPath(target.path)!, target);
    topics.push(t);
    return router;
  };

  router.subscriptions = () => topics.map((t) => subscriptionItem(t, ''));

  return router;
}

async function handleDelivery(req: IncomingMessage, res: ServerResponse, target: RouteTarget, opts: ResolvedRouterOptions, runners: Runners): Promise<void> {
  const { topic } = target;
  const bulkRoute = topic.bulk !== undefined;
  /**
   * A delivery that can never succeed. On a bulk route the entries cannot be named, so the
   * answer is 404, which daprd reads as DROP for every entry ({"status":"DROP"} would read as
   * "no statuses": all retried).
   */
  const malformed = (reason: string, wholeBulk: boolean): void => {
    opts.logger.warn(`dropping a malformed delivery: ${reason}`, { pubsubName: topic.pubsubName, topic: topic.topic, route: target.path });
    if (wholeBulk) answerNotFound(res, `malformed bulk delivery: ${reason}`);
    else answerStatus(res, DROP);
  };

  const body = await readRequestBody(req, bulkRoute ? opts.maxBulkBodyBytes : opts.maxBodyBytes);
  if (body.kind === 'too-large') return malformed(`the body is larger than ${body.limit} bytes (maxBodyBytes${bulkRoute ? '/maxBulkBodyBytes' : ''})`, bulkRoute);
  if (body.kind === 'unreadable') return malformed(body.reason, bulkRoute);

  const isolation = await commitRequestUnitOfWork(opts.transactions, opts.logger);
  if (!isolation.ok) return answerStatus(res, RETRY);

  const source = body.kind === 'bytes' ? { bytes: body.bytes } : { value: body.value };
  const rawBody = body.kind === 'bytes' ? body.bytes : undefined;
  let read: Parsed<ReadEvent>;
  if (isBinaryMode(req.headers)) {
    read = readSingleDelivery(req.headers, source);
  } else {
    const json = jsonBody(req.headers, source);
    if (!json.ok) return malformed(json.reason, bulkRoute);
    if (isBulkEnvelope(json.value)) {
      const statuses = await isolation.run(() => handleBulk(req, json.value, target, opts, runners));
      if (statuses === undefined) return malformed("a bulk delivery must have an 'entries' array", true);
      return answerBulk(res, statuses);
    }
    read = readStructured(json.value);
  }
  if (!read.ok) return malformed(read.reason, false);
  const event = read.value;
  const status = await isolation.run(() => deliver({ topic, handler: target.handler, route: target.path, read: event, headers: req.headers, rawBody }, opts, runners));
  answerStatus(res, status);
}

/**
 * One delivery: with the inbox, a keyed one in its key's order (ordering.ts), any other in the
 * next delivery transaction (delivery-groups.ts); without the inbox, the handler alone.
 */
async function deliver(input: DeliveryInput, opts: ResolvedRouterOptions, runners: Runners): Promise<DaprStatus> {
  const { groups, ordered } = runners;
  const d = buildDelivery(input, groups !== undefined);
  if (ordered) {
    const ordering = ordered.classify(d);
    if (ordering.kind === 'ordered') return ordered.deliver(d, ordering, await validateDelivery(d, opts.logger));
  }
  const verdict = await validateDelivery(d, opts.logger);
  if (verdict !== undefined) return verdict;
  if (groups) return groups.submit(d);
  return answerFor(await invokeHandler(d), d, opts.logger);
}

/**
 * One status per named entry, in order. With the inbox, the unkeyed entries share one
 * transaction (their handlers run in the batch's order), then the keyed ones run one at a time
 * in the order they came, each by its key's rules (ordering.ts); without the inbox, they all run
 * one after another.
 */
async function handleBulk(req: IncomingMessage, envelope: unknown, target: RouteTarget, opts: ResolvedRouterOptions, runners: Runners): Promise<BulkEntryStatus[] | undefined> {
  const { topic } = target;
  const { groups, ordered } = runners;
  const bulk = readBulk(envelope, { topic: topic.topic, pubsubName: topic.pubsubName });
  if (!bulk.ok) return undefined;
  if (bulk.value.unnamed > 0) {
    opts.logger.warn(`${bulk.value.unnamed} bulk entr${bulk.value.unnamed === 1 ? 'y has' : 'ies have'} no usable entryId and cannot be answered (daprd retries them)`, {
      pubsubName: topic.pubsubName,
      topic: topic.topic,
    });
  }
  const statuses: BulkEntryStatus[] = [];
  const ready: Array<{ at: number; d: Delivery }> = [];
  const keyed: Array<{ at: number; d: Delivery; key: string; sequence: number; verdict: DaprStatus | undefined }> = [];
  for (const entry of bulk.value.entries) {
    if (!entry.read.ok) {
      opts.logger.warn(`dropping a malformed bulk entry: ${entry.read.reason}`, { pubsubName: topic.pubsubName, topic: topic.topic, entryId: entry.entryId });
      statuses.push({ entryId: entry.entryId, status: DROP });
      continue;
    }
    const input = { topic, handler: target.handler, route: target.path, read: entry.read.value, headers: req.headers, bulk: { entryId: entry.entryId, metadata: entry.metadata } };
    if (ordered) {
      const d = buildDelivery(input, true);
      const ordering = ordered.classify(d);
      if (ordering.kind === 'ordered') {
        statuses.push({ entryId: entry.entryId, status: RETRY });
        keyed.push({ at: statuses.length - 1, d, key: ordering.key, sequence: ordering.sequence, verdict: await validateDelivery(d, opts.logger) });
        continue;
      }
    }
    const d = await prepareDelivery(input, groups !== undefined, opts.logger);
    statuses.push({ entryId: entry.entryId, status: typeof d === 'string' ? d : DROP });
    if (typeof d !== 'string') ready.push({ at: statuses.length - 1, d });
  }
  if (groups) {
    if (ready.length > 0) {
      const answers = await groups.runTogether(ready.map((r) => r.d));
      ready.forEach((r, i) => (statuses[r.at]!.status = answers[i]!));
    }
    for (const k of keyed) statuses[k.at]!.status = await ordered!.deliver(k.d, k, k.verdict);
  } else {
    for (const r of ready) statuses[r.at]!.status = answerFor(await invokeHandler(r.d), r.d, opts.logger);
  }
  return statuses;
}
