/**
 * Programmatic subscriptions: GET /dapr/subscribe on the app, read as daprd reads it
 * (dapr pkg/runtime/pubsub/subscriptions.go GetSubscriptionsHTTP).
 *
 * 200 + JSON array (empty body = none); 404 = none; any other status = logged, none.
 * v2 `routes.rules` come first in order, then `routes.default`, or else the v1 `route`; an
 * item with no route at all is dropped. Go decodes the JSON, so keys match case-insensitively
 * and a value of the wrong type (a non-string metadata value) fails the whole discovery.
 */
import { AppClient, appEndpoint } from './app-client';
import { CelProgram, compileCel } from './cel';
import { EmulatorError, messageOf } from './errors';
import { goField, goKind, GoNumber, GoObject, GoValue, isGoObject, parseFirstValue } from './go-json';
import { setOwn } from './request-metadata';

/** One routing rule; the default route is the last rule, with match ''. */
export interface RouteRule {
  match: string;
  path: string;
}

export interface BulkSubscribeSettings {
  enabled: boolean;
  /** Default 100, as daprd's default bulk subscriber. */
  maxMessagesCount: number;
  /** Default 1000 ms, as daprd's default bulk subscriber. */
  maxAwaitDurationMs: number;
}

/** A subscription as the emulator registered it. */
export interface Subscription {
  pubsubName: string;
  topic: string;
  /** Rules in evaluation order; first match wins. */
  rules: RouteRule[];
  metadata: Record<string, string>;
  deadLetterTopic?: string;
  bulkSubscribe?: BulkSubscribeSettings;
}

/** A subscription with its compiled rules (index-aligned with `rules`; undefined = always matches). */
export interface CompiledSubscription extends Subscription {
  programs: Array<CelProgram | undefined>;
}

export const DEFAULT_BULK_MAX_MESSAGES = 100;
export const DEFAULT_BULK_MAX_AWAIT_MS = 1000;

export interface DiscoveryResult {
  subscriptions: CompiledSubscription[];
  /** What daprd would have logged as warnings. */
  warnings: string[];
}

/** Calls GET /dapr/subscribe; throws EmulatorError for an unreachable app or an unreadable answer. */
export async function discoverSubscriptions(
  client: AppClient,
  app: { appId: string; appUrl: string; appApiToken?: string },
): Promise<DiscoveryResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'dapr-app-id': app.appId };
  if (app.appApiToken !== undefined) headers['dapr-api-token'] = app.appApiToken;
  let answer;
  try {
    answer = await client.request({ method: 'GET', url: appEndpoint(app.appUrl, 'dapr/subscribe'), headers });
  } catch (err) {
    throw new EmulatorError('DISCOVERY_FAILED', `GET ${app.appUrl}/dapr/subscribe failed for app ${app.appId}: ${messageOf(err)}`, {
      details: { appId: app.appId, appUrl: app.appUrl },
      cause: err,
    });
  }
  if (answer.status === 404) return { subscriptions: [], warnings: [] };
  if (answer.status !== 200) {
    return { subscriptions: [], warnings: [`app ${app.appId} returned http status code ${answer.status} from subscription endpoint`] };
  }
  return parseSubscriptionList(answer.body, app.appId);
}

/** Reads a /dapr/subscribe answer body. */
export function parseSubscriptionList(body: Buffer, appId: string): DiscoveryResult {
  const text = body.toString('utf8');
  if (text.trim() === '') return { subscriptions: [], warnings: [] };
  const fail = (why: string): never => {
    throw new EmulatorError('DISCOVERY_FAILED', `error getting topics from app ${appId}: ${why}`, { details: { appId, body: text } });
  };
  const parsed = parseFirstValue(text);
  if (!parsed.ok) return fail(parsed.error);
  if (parsed.value === null) return { subscriptions: [], warnings: [] };
  if (!Array.isArray(parsed.value)) return fail(`json: cannot unmarshal ${goKind(parsed.value)} into Go value of type []pubsub.SubscriptionJSON`);
  const subscriptions: CompiledSubscription[] = [];
  const warnings: string[] = [];
  parsed.value.forEach((item, index) => {
    if (item === null) return;
    if (!isGoObject(item)) fail(`item ${index}: json: cannot unmarshal ${goKind(item)} into Go value of type pubsub.SubscriptionJSON`);
    const sub = readItem(item as GoObject, index, fail);
    if (sub.rules.length === 0) {
      warnings.push(`topic ${sub.topic} has an empty routes. removing from subscriptions list`);
      return;
    }
    subscriptions.push(sub);
  });
  return { subscriptions, warnings };
}

function readItem(item: GoObject, index: number, fail: (why: string) => never): CompiledSubscription {
  const str = (obj: GoObject, name: string, where: string): string => {
    const value = goField(obj, name);
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') return fail(`item ${index}: ${where}${name} must be a string, got ${goKind(value)}`);
    return value;
  };
  const obj = (value: GoValue | undefined, where: string): GoObject | undefined => {
    if (value === undefined || value === null) return undefined;
    if (!isGoObject(value)) return fail(`item ${index}: ${where} must be an object, got ${goKind(value)}`);
    return value;
  };

  const metadata: Record<string, string> = {};
  const rawMetadata = obj(goField(item, 'metadata'), 'metadata');
  if (rawMetadata) {
    for (const [key, value] of rawMetadata) {
      if (typeof value !== 'string') {
        fail(`item ${index}: metadata.${key} must be a string (Go map[string]string), got ${goKind(value)}`);
      }
      setOwn(metadata, key, value as string);
    }
  }

  const rules: RouteRule[] = [];
  const programs: Array<CelProgram | undefined> = [];
  const routes = obj(goField(item, 'routes'), 'routes');
  if (routes) {
    const list = goField(routes, 'rules');
    if (list !== undefined && list !== null) {
      if (!Array.isArray(list)) fail(`item ${index}: routes.rules must be an array, got ${goKind(list)}`);
      (list as GoValue[]).forEach((raw, r) => {
        const rule = obj(raw, `routes.rules[${r}]`);
        if (!rule) return;
        const match = str(rule, 'match', `routes.rules[${r}].`);
        const path = str(rule, 'path', `routes.rules[${r}].`);
        const trimmed = match.trim();
        rules.push({ match, path });
        programs.push(trimmed === '' ? undefined : compileCel(trimmed));
      });
    }
  }
  const defaultRoute = routes ? str(routes, 'default', 'routes.') : '';
  const route = str(item, 'route', '');
  if (defaultRoute !== '' || route !== '') {
    rules.push({ match: '', path: defaultRoute !== '' ? defaultRoute : route });
    programs.push(undefined);
  }

  const sub: CompiledSubscription = {
    pubsubName: str(item, 'pubsubname', ''),
    topic: str(item, 'topic', ''),
    rules,
    programs,
    metadata,
  };
  const deadLetterTopic = str(item, 'deadLetterTopic', '');
  if (deadLetterTopic !== '') sub.deadLetterTopic = deadLetterTopic;
  const bulk = obj(goField(item, 'bulkSubscribe'), 'bulkSubscribe');
  if (bulk) {
    const enabled = goField(bulk, 'enabled');
    if (enabled !== undefined && enabled !== null && typeof enabled !== 'boolean') {
      fail(`item ${index}: bulkSubscribe.enabled must be a boolean, got ${goKind(enabled)}`);
    }
    sub.bulkSubscribe = {
      enabled: enabled === true,
      maxMessagesCount: positiveInt(goField(bulk, 'maxMessagesCount'), DEFAULT_BULK_MAX_MESSAGES, 'maxMessagesCount', fail),
      maxAwaitDurationMs: positiveInt(goField(bulk, 'maxAwaitDurationMs'), DEFAULT_BULK_MAX_AWAIT_MS, 'maxAwaitDurationMs', fail),
    };
  }
  return sub;
}

function positiveInt(value: GoValue | undefined, fallback: number, name: string, fail: (why: string) => never): number {
  if (value === undefined || value === null) return fallback;
  const n = value instanceof GoNumber ? value.toNumber() : NaN;
  if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647) return fail(`bulkSubscribe.${name} must be an int32, got ${goKind(value)}`);
  return n > 0 ? n : fallback;
}

/** The public view of a subscription (without compiled programs). */
export function publicView(sub: CompiledSubscription): Subscription {
  const out: Subscription = {
    pubsubName: sub.pubsubName,
    topic: sub.topic,
    rules: sub.rules.map((r) => ({ ...r })),
    metadata: { ...sub.metadata },
  };
  if (sub.deadLetterTopic !== undefined) out.deadLetterTopic = sub.deadLetterTopic;
  if (sub.bulkSubscribe !== undefined) out.bulkSubscribe = { ...sub.bulkSubscribe };
  return out;
}
