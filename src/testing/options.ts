/**
 * Options of the emulator: what a caller passes (`DaprEmulatorOptions`), the defaults (one
 * object), and the resolved, validated shape the rest of the code reads.
 */
import { EmulatorError } from './errors';

/** Access rules of the pubsub components, as Dapr's component metadata sets them. */
export interface PubsubScopes {
  /** `allowedTopics`: when set, no app may publish to or subscribe to any other topic. */
  allowedTopics?: string[];
  /** `publishingScopes`: app id -> topics it may publish to. An app listed with [] may publish nothing. */
  publishingScopes?: Record<string, string[]>;
  /** `subscriptionScopes`: app id -> topics it may subscribe to. An app listed with [] subscribes to nothing. */
  subscriptionScopes?: Record<string, string[]>;
}

/** A constant-interval retry policy, as a Dapr resiliency `retries` policy for pubsub inbound. */
export interface RetryPolicy {
  /** Retries after the first attempt (an integer >= 0). */
  retries: number;
  /** Wait between attempts, in milliseconds (an integer >= 0). */
  intervalMs: number;
}

/** Where the emulator writes what a sidecar would log. */
export interface EmulatorLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface DaprEmulatorOptions {
  /** TCP port of the default sidecar. 0 picks a free port. Default 0. */
  port?: number;
  /** Interface the sidecars listen on. Default '127.0.0.1'. */
  host?: string;
  /** App id of the default sidecar; becomes the envelope `source` of its publishes. Default 'app'. */
  appId?: string;
  /** When set, the app at this URL is attached as `appId` once the sidecar listens. */
  appUrl?: string;
  /** Names of the pubsub components. Others answer 404 ERR_PUBSUB_NOT_FOUND. Default ['pubsub']. */
  pubsubs?: string[];
  /** DAPR_API_TOKEN: when set, every API call except the health routes needs header dapr-api-token. */
  apiToken?: string;
  /** APP_API_TOKEN: sent as dapr-api-token on every sidecar -> app request. */
  appApiToken?: string;
  /** Inbound retry policy for RETRY answers. Default: none (one attempt), as daprd without a policy. */
  resiliency?: RetryPolicy;
  /**
   * How the broker itself redelivers a message whose retries ran out and that has no dead-letter
   * topic (daprd hands it back to the component: Redis redelivers after 60 s, in-memory 10 times).
   * `retries` here counts redeliveries. Default: none, the message is dropped and recorded.
   */
  redelivery?: RetryPolicy;
  /** Publishing and subscription scopes applied to every pubsub component. Default: none. */
  scopes?: PubsubScopes;
  /** Timeout of each sidecar -> app request, in milliseconds; 0 = none (daprd has none). Default 0. */
  appTimeoutMs?: number;
  /** Reported as `runtimeVersion` by GET /v1.0/metadata. Default '1.18.0'. */
  runtimeVersion?: string;
  /**
   * Entries kept in each record array (requests, publishes, ...); beyond it plus a tenth, the
   * oldest are dropped. 0 = keep all. Default 0 (the CLI uses 10000).
   */
  recordLimit?: number;
  /** Receives what a sidecar would log (discovery problems, drops). Default: silent. */
  logger?: EmulatorLogger;
}

export interface ResolvedOptions {
  port: number;
  host: string;
  appId: string;
  appUrl: string | undefined;
  pubsubs: readonly string[];
  apiToken: string | undefined;
  appApiToken: string | undefined;
  resiliency: RetryPolicy;
  redelivery: RetryPolicy;
  scopes: PubsubScopes;
  appTimeoutMs: number;
  runtimeVersion: string;
  recordLimit: number;
  logger: EmulatorLogger;
}

const silent: EmulatorLogger = { info: () => undefined, warn: () => undefined };

export const DEFAULTS = {
  port: 0,
  host: '127.0.0.1',
  appId: 'app',
  pubsubs: ['pubsub'] as readonly string[],
  resiliency: { retries: 0, intervalMs: 0 } as RetryPolicy,
  redelivery: { retries: 0, intervalMs: 0 } as RetryPolicy,
  appTimeoutMs: 0,
  runtimeVersion: '1.18.0',
  recordLimit: 0,
} as const;

/** Validates every option and fills in defaults; throws EmulatorError('INVALID_OPTION'). */
export function resolveOptions(input: DaprEmulatorOptions = {}): ResolvedOptions {
  if (input === null || typeof input !== 'object') throw EmulatorError.invalidOption('options', input, 'must be an object');
  const port = input.port ?? DEFAULTS.port;
  checkPort('port', port);
  const host = input.host ?? DEFAULTS.host;
  checkNonEmptyString('host', host);
  const appId = input.appId ?? DEFAULTS.appId;
  checkAppId('appId', appId);
  if (input.appUrl !== undefined) checkAppUrl('appUrl', input.appUrl);
  const pubsubs = input.pubsubs ?? DEFAULTS.pubsubs;
  if (!Array.isArray(pubsubs) || pubsubs.length === 0) {
    throw EmulatorError.invalidOption('pubsubs', pubsubs, 'must be a non-empty array of component names');
  }
  pubsubs.forEach((name, i) => {
    if (typeof name !== 'string' || name === '' || name.includes('/')) {
      throw EmulatorError.invalidOption(`pubsubs[${i}]`, name, 'must be a non-empty string without "/"');
    }
  });
  if (new Set(pubsubs).size !== pubsubs.length) throw EmulatorError.invalidOption('pubsubs', pubsubs, 'must not repeat a name');
  if (input.apiToken !== undefined) checkNonEmptyString('apiToken', input.apiToken);
  if (input.appApiToken !== undefined) checkNonEmptyString('appApiToken', input.appApiToken);
  const resiliency = checkRetryPolicy('resiliency', input.resiliency ?? DEFAULTS.resiliency);
  const redelivery = checkRetryPolicy('redelivery', input.redelivery ?? DEFAULTS.redelivery);
  const scopes = checkScopes(input.scopes ?? {});
  const appTimeoutMs = input.appTimeoutMs ?? DEFAULTS.appTimeoutMs;
  checkInteger('appTimeoutMs', appTimeoutMs, 0);
  const runtimeVersion = input.runtimeVersion ?? DEFAULTS.runtimeVersion;
  checkNonEmptyString('runtimeVersion', runtimeVersion);
  const recordLimit = input.recordLimit ?? DEFAULTS.recordLimit;
  checkInteger('recordLimit', recordLimit, 0);
  const logger = input.logger ?? silent;
  if (typeof logger.info !== 'function' || typeof logger.warn !== 'function') {
    throw EmulatorError.invalidOption('logger', logger, 'must have info(message) and warn(message) functions');
  }
  return {
    port,
    host,
    appId,
    appUrl: input.appUrl,
    pubsubs: [...pubsubs],
    apiToken: input.apiToken,
    appApiToken: input.appApiToken,
    resiliency,
    redelivery,
    scopes,
    appTimeoutMs,
    runtimeVersion,
    recordLimit,
    logger,
  };
}

export function checkPort(option: string, value: unknown): asserts value is number {
  checkInteger(option, value, 0, 65535);
}

export function checkInteger(option: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const rule = max === Number.MAX_SAFE_INTEGER ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`;
    throw EmulatorError.invalidOption(option, value, rule);
  }
}

export function checkNonEmptyString(option: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '') throw EmulatorError.invalidOption(option, value, 'must be a non-empty string');
}

export function checkAppId(option: string, value: unknown): asserts value is string {
  checkNonEmptyString(option, value);
  if (/[\s/]/.test(value)) throw EmulatorError.invalidOption(option, value, 'must not contain "/" or white space');
}

export function checkAppUrl(option: string, value: unknown): asserts value is string {
  checkNonEmptyString(option, value);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw EmulatorError.invalidOption(option, value, 'must be an absolute http:// URL');
  }
  if (url.protocol !== 'http:') throw EmulatorError.invalidOption(option, value, 'must be an absolute http:// URL');
}

function checkRetryPolicy(option: string, value: unknown): RetryPolicy {
  if (value === null || typeof value !== 'object') {
    throw EmulatorError.invalidOption(option, value, 'must be an object { retries, intervalMs }');
  }
  const policy = value as Partial<RetryPolicy>;
  checkInteger(`${option}.retries`, policy.retries, 0);
  checkInteger(`${option}.intervalMs`, policy.intervalMs, 0);
  return { retries: policy.retries, intervalMs: policy.intervalMs };
}

function checkScopes(value: unknown): PubsubScopes {
  if (value === null || typeof value !== 'object') throw EmulatorError.invalidOption('scopes', value, 'must be an object');
  const scopes = value as PubsubScopes;
  const out: PubsubScopes = {};
  if (scopes.allowedTopics !== undefined) out.allowedTopics = checkTopicList('scopes.allowedTopics', scopes.allowedTopics);
  for (const key of ['publishingScopes', 'subscriptionScopes'] as const) {
    const map = scopes[key];
    if (map === undefined) continue;
    if (map === null || typeof map !== 'object' || Array.isArray(map)) {
      throw EmulatorError.invalidOption(`scopes.${key}`, map, 'must be an object mapping app ids to topic arrays');
    }
    const copy: Record<string, string[]> = {};
    for (const [appId, topics] of Object.entries(map)) {
      Object.defineProperty(copy, appId, {
        value: checkTopicList(`scopes.${key}.${appId}`, topics),
        enumerable: true,
      });
    }
    out[key] = copy;
  }
  return out;
}

function checkTopicList(option: string, value: unknown): string[] {
  if (!Array.isArray(value) || value.some((t) => typeof t !== 'string')) {
    throw EmulatorError.invalidOption(option, value, 'must be an array of topic names');
  }
  return [...(value as string[])];
}

/** Dapr's IsOperationAllowed for one app and topic. */
export function isTopicAllowed(scopes: PubsubScopes, kind: 'publish' | 'subscribe', appId: string, topic: string): boolean {
  if (scopes.allowedTopics && !scopes.allowedTopics.includes(topic)) return false;
  const map = kind === 'publish' ? scopes.publishingScopes : scopes.subscriptionScopes;
  if (map && Object.prototype.hasOwnProperty.call(map, appId)) return map[appId]!.includes(topic);
  return true;
}
