/**
 * Options of `createSubscriptionRouter()`: the input type, the defaults (one object), and the
 * resolved shape, checked when the router is built.
 */
import { OutboxConfigError } from '../../errors';
import { consoleLogger, type Logger } from '../../core/logger';
import { checkTableName } from '../../core/options';
import type { OutboxEventMap } from '../../core/events';
import type { InboxStore } from '../../ports/inbox-store';
import type { TransactionPort } from '../../ports/transactions';
import { resolveAppApiToken } from './api-token';
import type { InboxBinding } from './delivery';
import type { GroupLimits } from './delivery-groups';
import { DEFAULT_ROUTE_PREFIX, normalizeRoute } from './route-paths';
import { checkOrderingStart, gapTimeoutMs, INBOX_KEY_MAX } from './topic-registration';

/** The parts of an Outbox the router uses: its ports, logger and clock. */
export interface RouterOutbox {
  readonly inbox: InboxStore | undefined;
  readonly transactions: TransactionPort;
  readonly logger?: Logger;
  readonly clock?: { now(): number };
  /** The outbox's events: the router reports `orderingGap` and `orderingLate` there. */
  emit?<K extends 'orderingGap' | 'orderingLate'>(name: K, ...args: OutboxEventMap[K]): boolean;
}

/** What the inbox needs when it is given as a database instead of an outbox. */
export type InboxPorts = { store: InboxStore; transactions: TransactionPort };

/**
 * Builds the inbox's ports from the `sequelize` option and the inbox table name. The package's
 * entry point supplies it (the router itself knows only the ports).
 */
export type InboxFactory = (database: unknown, table: string) => InboxPorts;

export interface SubscriptionRouterOptions {
  /**
   * The service's outbox: turns the inbox on (its table and Sequelize instance), and its logger
   * becomes the router's default. Handlers can then `outbox.bus.publish()` in the delivery's
   * transaction: the events commit with the handler's writes and the inbox record.
   */
  outbox?: RouterOutbox;
  /**
   * A Sequelize instance, to use the inbox without an outbox. Its table must exist
   * (`runMigrations(sequelize)` creates it). Ignored when `outbox` is given (it must then be the
   * outbox's own instance).
   */
  sequelize?: unknown;
  /** Inbox table name with `sequelize`. Default 'integration_event_inbox' (with `outbox`: the outbox's). */
  inboxTable?: string;
  /** Set false to run handlers without the inbox (no transaction, no de-duplication). Default true when `outbox` or `sequelize` is given. */
  inbox?: boolean;
  /**
   * The token every request must carry in `dapr-api-token` (daprd's APP_API_TOKEN). Default: env
   * APP_API_TOKEN when set, else no check. `null` turns the check off even when the env var is set.
   */
  appApiToken?: string | null;
  /**
   * This service's name in the inbox (e.g. its Dapr app id). The inbox consumer of a topic is
   * `<consumer>/<pubsub>/<topic>`, or `<pubsub>/<topic>` without it; a topic's own `consumer`
   * option replaces it. Set it when several services share one database. The route is not part
   * of the name, so changing a route does not forget which events were handled.
   */
  consumer?: string;
  /** Where malformed deliveries (DROP reasons) and handler failures are reported. Default: the outbox's logger, else the console. */
  logger?: Partial<Logger>;
  /** Largest body of a single delivery, bytes; a larger one is answered DROP. Default 4194304 (4 MiB, daprd's default). */
  maxBodyBytes?: number;
  /** Largest body of a bulk delivery, bytes; a larger one is answered 404 (daprd drops every entry). Default 67108864 (64 MiB). */
  maxBulkBodyBytes?: number;
  /** Prefix of default routes; a request under it that matches no topic gets 404. Default '/dapr-outbox'. */
  routePrefix?: string;
  /**
   * With the inbox: how deliveries share transactions. A delivery that finds fewer than
   * `maxTransactions` delivery transactions open starts one at once; the others wait and share
   * the next one (one inbox INSERT, their handlers in turn, one COMMIT), up to `maxDeliveries`
   * each. `maxDeliveries: 1` gives every delivery a transaction of its own.
   */
  groupCommit?: {
    /** Most deliveries in one transaction. Default 100. */
    maxDeliveries?: number;
    /**
     * Most delivery transactions open at once. Default 1 on SQLite (one writer), else the
     * connection pool's size: handlers that wait on the network run as many at once as they did
     * with a transaction each, and groups form when every connection is busy.
     */
    maxTransactions?: number;
  };
  /**
   * With the inbox, for keyed deliveries (see ordering.ts): how long, in seconds, an ordering key
   * waits for a missing event before it skips it and goes on. Default 600. A topic's own
   * `orderingGapTimeout` replaces it.
   */
  orderingGapTimeout?: number;
  /**
   * With the inbox, for keyed deliveries: where this consumer starts in a key it has never
   * handled. 'beginning' (the default): at sequence 1, so a first delivery of sequence 57 waits
   * for 1 to 56. 'first-delivered': at whatever sequence comes first, for a consumer added to a
   * topic that already has traffic (it will never get the earlier events), at the price of
   * dropping, as late, an earlier event that a reordering broker delivers after it. A topic's
   * own `orderingStart` replaces it.
   */
  orderingStart?: OrderingStart;
}

/** Where a consumer starts in a key it has never handled (see SubscriptionRouterOptions.orderingStart). */
export type OrderingStart = 'beginning' | 'first-delivered';

export const ROUTER_DEFAULTS = Object.freeze({
  groupCommit: Object.freeze({ maxDeliveries: 100, maxTransactions: 5, maxTransactionsOneWriter: 1 }),
  maxBodyBytes: 4 * 1024 * 1024,
  maxBulkBodyBytes: 64 * 1024 * 1024,
  routePrefix: DEFAULT_ROUTE_PREFIX,
  orderingGapTimeout: 600,
  orderingStart: 'beginning' as OrderingStart,
});

export interface ResolvedRouterOptions {
  inbox: InboxBinding | undefined;
  /** The transactions of the outbox or the inbox, when there is either. */
  transactions: TransactionPort | undefined;
  appApiToken: string | undefined;
  consumer: string | undefined;
  logger: Logger;
  maxBodyBytes: number;
  maxBulkBodyBytes: number;
  routePrefix: string;
  groupCommit: GroupLimits;
  /** How long a key waits for a missing sequence, milliseconds (a topic may have its own). */
  orderingGapTimeoutMs: number;
  orderingStart: OrderingStart;
  /** Where `orderingGap` and `orderingLate` are emitted (the outbox), if anywhere. */
  events: Pick<Required<RouterOutbox>, 'emit'> | undefined;
}

export function resolveRouterOptions(options: SubscriptionRouterOptions = {}, inboxFor?: InboxFactory): ResolvedRouterOptions {
  if (options === null || typeof options !== 'object') throw new OutboxConfigError('options', options, 'must be an object');
  const { outbox } = options;
  if (outbox !== undefined && (!outbox || typeof outbox !== 'object' || !isTransactionPort(outbox.transactions))) {
    throw new OutboxConfigError('outbox', outbox === null ? null : typeof outbox, 'must be an Outbox (from createOutbox())');
  }
  if (options.sequelize !== undefined && !isSequelize(options.sequelize)) {
    throw new OutboxConfigError('sequelize', typeof options.sequelize, 'must be a Sequelize instance');
  }
  const outboxDatabase = (outbox as { sequelize?: unknown } | undefined)?.sequelize;
  if (outbox && options.sequelize && options.sequelize !== outboxDatabase) {
    throw new OutboxConfigError('sequelize', 'another instance', "must be the outbox's own Sequelize instance when both are given");
  }
  if (options.inbox !== undefined && typeof options.inbox !== 'boolean') throw new OutboxConfigError('inbox', options.inbox, 'must be a boolean');
  if (options.inboxTable !== undefined) checkTableName(options.inboxTable, 'inboxTable');
  if (options.consumer !== undefined && (typeof options.consumer !== 'string' || options.consumer === '' || options.consumer.length > INBOX_KEY_MAX - 2)) {
    throw new OutboxConfigError('consumer', options.consumer, `must be a non-empty string of at most ${INBOX_KEY_MAX - 2} characters`);
  }

  const logger = resolveLogger(options.logger ?? outbox?.logger);
  const maxBodyBytes = positiveInt('maxBodyBytes', options.maxBodyBytes ?? ROUTER_DEFAULTS.maxBodyBytes, options.maxBodyBytes);
  const maxBulkBodyBytes = positiveInt('maxBulkBodyBytes', options.maxBulkBodyBytes ?? ROUTER_DEFAULTS.maxBulkBodyBytes, options.maxBulkBodyBytes);
  let routePrefix: string = ROUTER_DEFAULTS.routePrefix;
  if (options.routePrefix !== undefined) {
    const p = normalizeRoute(options.routePrefix);
    if (p === undefined || p.endsWith('/')) throw new OutboxConfigError('routePrefix', options.routePrefix, "must be a path like '/events' (no trailing slash, query or spaces)");
    routePrefix = p;
  }

  let inbox: InboxBinding | undefined;
  if (options.inbox !== false) {
    const clock = outbox?.clock;
    const now = clock ? () => clock.now() : Date.now;
    if (outbox?.inbox) {
      inbox = { store: outbox.inbox, transactions: outbox.transactions, now };
    } else if (options.sequelize !== undefined && inboxFor) {
      inbox = { ...inboxFor(options.sequelize, options.inboxTable ?? DEFAULT_INBOX_TABLE), now };
    } else if (options.inbox === true) {
      throw new OutboxConfigError('inbox', true, 'needs `outbox` or `sequelize`');
    }
  }

  const group = options.groupCommit ?? {};
  if (!group || typeof group !== 'object') throw new OutboxConfigError('groupCommit', group, 'must be an object { maxDeliveries?, maxTransactions? }');
  const defaults = ROUTER_DEFAULTS.groupCommit;
  const groupCommit: GroupLimits = {
    maxSize: countOf('groupCommit.maxDeliveries', group.maxDeliveries ?? defaults.maxDeliveries, group.maxDeliveries),
    maxOpen: countOf('groupCommit.maxTransactions', group.maxTransactions ?? (inbox?.transactions.oneWriter ? defaults.maxTransactionsOneWriter : (inbox?.transactions.concurrency ?? defaults.maxTransactions)), group.maxTransactions),
  };

  const orderingGapTimeoutMs = gapTimeoutMs('orderingGapTimeout', options.orderingGapTimeout ?? ROUTER_DEFAULTS.orderingGapTimeout, options.orderingGapTimeout);
  const orderingStart = checkOrderingStart(options.orderingStart ?? ROUTER_DEFAULTS.orderingStart);

  return {
    inbox,
    groupCommit,
    orderingGapTimeoutMs,
    orderingStart,
    events: outbox && typeof outbox.emit === 'function' ? (outbox as Pick<Required<RouterOutbox>, 'emit'>) : undefined,
    transactions: outbox?.transactions ?? inbox?.transactions,
    appApiToken: resolveAppApiToken(options.appApiToken),
    consumer: options.consumer,
    logger,
    maxBodyBytes,
    maxBulkBodyBytes,
    routePrefix,
  };
}

/** The inbox table's default name (the outbox's migrations create it). */
const DEFAULT_INBOX_TABLE = 'integration_event_inbox';

function isTransactionPort(t: unknown): t is TransactionPort {
  return !!t && typeof (t as TransactionPort).run === 'function' && typeof (t as TransactionPort).detached === 'function';
}

function isSequelize(s: unknown): boolean {
  return !!s && typeof (s as { query?: unknown }).query === 'function' && typeof (s as { getDialect?: unknown }).getDialect === 'function';
}

function positiveInt(name: string, value: number, given: unknown): number {
  if (!Number.isInteger(value) || value < 1) throw new OutboxConfigError(name, given, 'must be an integer number of bytes >= 1');
  return value;
}

function countOf(name: string, value: number, given: unknown): number {
  if (!Number.isInteger(value) || value < 1) throw new OutboxConfigError(name, given, 'must be an integer >= 1');
  return value;
}

function resolveLogger(l: Partial<Logger> | undefined): Logger {
  if (l === undefined) return consoleLogger;
  if (!l || typeof l !== 'object') throw new OutboxConfigError('logger', l, 'must be an object with warn/error (and optionally info/debug) methods');
  const pick = (name: keyof Logger): Logger[keyof Logger] => {
    const fn = l[name];
    if (fn === undefined) return () => {};
    if (typeof fn !== 'function') throw new OutboxConfigError(`logger.${name}`, fn, 'must be a function');
    return fn.bind(l);
  };
  return { debug: pick('debug'), info: pick('info'), warn: pick('warn'), error: pick('error') };
}
