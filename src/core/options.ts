import { OutboxConfigError } from '../errors';

/**
 * Options of `createOutbox()` that tune the core. Names and defaults follow MASA's
 * IntegrationEvents options in camelCase. Every duration is in SECONDS (fractions allowed).
 */
export interface OutboxTuning {
  /** Pubsub component name for events published without one, at most 255 characters. Default: the publisher's, else 'pubsub'. */
  pubsubName?: string;
  /** In-memory retries of a failed post-commit publish before the database retry takes over. Default 3. */
  localRetryTimes?: number;
  /** Database retries after the first attempt; then the row is terminal-failed (kept, visible). Default 10. */
  maxRetryTimes?: number;
  /** How often the database retry processor runs, seconds. Default 60. */
  failedRetryInterval?: number;
  /** Shortest wait before a failed row is tried again, seconds (backoff floor). Default 60. */
  minimumRetryInterval?: number;
  /** Longest wait between two attempts of a row, seconds (backoff ceiling). Default 3600. */
  maximumRetryInterval?: number;
  /** How often the local-queue retry runs, seconds. Default 3. */
  localFailedRetryInterval?: number;
  /**
   * Rows claimed at a time by the database retry; a pass claims batch after batch while they come
   * back full. Default 500 (MASA's is 100): measured on a backlog, a claim of 500 costs the relay
   * about half the CPU per event of a claim of 100 and drains 1.5-2x faster; 1,000 adds little.
   */
  retryBatchSize?: number;
  /** Messages per bulk publish call. Default 100. */
  batchSize?: number;
  /**
   * Largest bulk publish call, bytes: the events' JSON plus 1 KiB per event for the entry and
   * CloudEvent around it. An event larger than this on its own is published alone. Default
   * 3145728 (3 MiB), under Dapr's default 4 MiB request limit (daprd's
   * `--dapr-http-max-request-size`); a bulk call the sidecar still refuses as too large (413) is
   * split in halves.
   */
  maxBatchBytes?: number;
  /** How often the local queue drops items that used up their retries, seconds. Default 60. */
  cleaningLocalQueueExpireInterval?: number;
  /** How often published rows (and old inbox rows) are deleted, seconds. Default 300. */
  cleaningExpireInterval?: number;
  /** Published rows older than this are deleted, seconds. Default 86400 (1 day). */
  publishedExpireTime?: number;
  /** Inbox entries older than this are deleted, seconds. Default 604800 (7 days). */
  inboxExpireTime?: number;
  /** Rows deleted per statement by the cleanup. Default 1000. */
  deleteBatchCount?: number;
  /**
   * How long a claim (by the committer or a processor) keeps other replicas off a row, seconds.
   * A process that dies holding rows frees them when this runs out; under `relayUnderRowLocks`,
   * also how long the relay's transaction may sit idle while its batch is out. Default 30.
   */
  leaseTime?: number;
  /** Use the publisher's bulk API for several messages of one topic. Default true. */
  bulk?: boolean;
  /**
   * The database retry under row locks, where the database has SKIP LOCKED (MariaDB 10.6+, MySQL
   * 8, PostgreSQL): one transaction locks a batch, publishes it and writes its outcome, one UPDATE
   * per row instead of a claim UPDATE and a mark UPDATE, and no lease. While the batch is out at
   * the broker the transaction may sit idle for `leaseTime`; past that the database ends its
   * connection (the session's `wait_timeout` on MySQL and MariaDB, put back before COMMIT;
   * `idle_in_transaction_session_timeout` for the transaction on PostgreSQL), so a process that
   * freezes mid-publish frees its rows as a lease would run out. False: leased claims, as on
   * databases without SKIP LOCKED (SQLite, older MySQL). Default true.
   */
  relayUnderRowLocks?: boolean;
  /** Largest serialised event accepted by `publish()`, bytes. Default 4194304 (4 MiB, Dapr's default request limit). */
  maxEventBytes?: number;
  /**
   * How long one read of `overview()` serves the metric gauges and `health()`, seconds: scrapes
   * and probes, however frequent, read the database at most once per this. Default 5.
   */
  overviewCacheTime?: number;
}

export type ResolvedTuning = Required<Omit<OutboxTuning, 'pubsubName'>> & { pubsubName: string };

export const DEFAULTS: Readonly<ResolvedTuning> = Object.freeze({
  pubsubName: 'pubsub',
  localRetryTimes: 3,
  maxRetryTimes: 10,
  failedRetryInterval: 60,
  minimumRetryInterval: 60,
  maximumRetryInterval: 3600,
  localFailedRetryInterval: 3,
  retryBatchSize: 500,
  batchSize: 100,
  maxBatchBytes: 3 * 1024 * 1024,
  cleaningLocalQueueExpireInterval: 60,
  cleaningExpireInterval: 300,
  publishedExpireTime: 86400,
  inboxExpireTime: 604800,
  deleteBatchCount: 1000,
  leaseTime: 30,
  bulk: true,
  relayUnderRowLocks: true,
  maxEventBytes: 4 * 1024 * 1024,
  overviewCacheTime: 5,
});

const integers = ['localRetryTimes', 'maxRetryTimes', 'retryBatchSize', 'batchSize', 'maxBatchBytes', 'deleteBatchCount', 'maxEventBytes'] as const;
const positiveSeconds = [
  'failedRetryInterval',
  'minimumRetryInterval',
  'maximumRetryInterval',
  'localFailedRetryInterval',
  'cleaningLocalQueueExpireInterval',
  'cleaningExpireInterval',
  'publishedExpireTime',
  'inboxExpireTime',
  'leaseTime',
  'overviewCacheTime',
] as const;

/** Longest pubsub name: the outbox table's pubsub_name column is VARCHAR(255). */
export const MAX_PUBSUB_NAME_LENGTH = 255;

/**
 * Longest instanceId. The lock_owner column is VARCHAR(100), and the claim without SKIP LOCKED
 * stamps rows with `<instanceId>#<claim number>`: 80 leaves room for that suffix.
 */
export const MAX_INSTANCE_ID_LENGTH = 80;

/** Longest table name in general: PostgreSQL's limit, and portable. */
const MAX_TABLE_NAME_LENGTH = 63;

/**
 * Longest name of the outbox and inbox tables on a database (a Sequelize dialect name). Their key
 * tables are named `<table>_keys` (58 leaves those 63), and the migrations name indexes after
 * them, `ix_<table>_state_modified` the longest at 18 characters more: MySQL and MariaDB refuse
 * names past 64 characters (46), and PostgreSQL cuts names past 63 short, so that past 58 two of
 * the indexes would get the same name.
 */
export function maxIndexedTableName(dialect: string): number {
  return dialect === 'mysql' || dialect === 'mariadb' ? 64 - 18 : MAX_TABLE_NAME_LENGTH - '_keys'.length;
}

/** Throws OutboxConfigError unless `value` is a table name of at most `max` letters, digits and _. */
export function checkTableName(value: unknown, option: string, max = MAX_TABLE_NAME_LENGTH): asserts value is string {
  if (typeof value !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(value) || value.length > max) {
    throw new OutboxConfigError(option, value, `must be an identifier of letters, digits and _, at most ${max} characters${max < MAX_TABLE_NAME_LENGTH ? ' on this database (the names of its indexes and key table are built from it)' : ''}`);
  }
}

/** Throws OutboxConfigError unless `value` is a pubsub name the outbox table can hold. */
export function checkPubsubName(value: unknown, option = 'pubsubName'): asserts value is string {
  if (typeof value !== 'string' || value.trim() === '') throw new OutboxConfigError(option, value, 'must be a non-empty string');
  if (value.length > MAX_PUBSUB_NAME_LENGTH) {
    throw new OutboxConfigError(option, value, `must be at most ${MAX_PUBSUB_NAME_LENGTH} characters (the pubsub_name column); it has ${value.length}`);
  }
}

/**
 * This process's name in lock columns: `instanceId` when given (checked), else
 * `<hostname>:<pid>:<random>` trimmed to the limit.
 */
export function resolveInstanceId(given: unknown, defaultName: () => string): string {
  if (given === undefined) {
    const name = defaultName();
    // A long hostname must not break the claim; the random part keeps the name unique.
    return name.length <= MAX_INSTANCE_ID_LENGTH ? name : name.slice(name.length - MAX_INSTANCE_ID_LENGTH);
  }
  if (typeof given !== 'string' || given.trim() === '') throw new OutboxConfigError('instanceId', given, 'must be a non-empty string');
  if (given.length > MAX_INSTANCE_ID_LENGTH) {
    throw new OutboxConfigError(
      'instanceId',
      given,
      `must be at most ${MAX_INSTANCE_ID_LENGTH} characters (lock_owner is VARCHAR(100) and claims append '#<number>'); it has ${given.length}`,
    );
  }
  return given;
}

/** Applies defaults and checks every rule; throws OutboxConfigError naming the option. */
export function resolveTuning(input: OutboxTuning, publisherPubsub?: string): ResolvedTuning {
  const out = { ...DEFAULTS } as ResolvedTuning;
  const given = input as Record<string, unknown>;
  for (const key of integers) {
    const v = given[key];
    if (v === undefined) continue;
    const min = key === 'localRetryTimes' || key === 'maxRetryTimes' ? 0 : 1;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new OutboxConfigError(key, v, `must be an integer >= ${min}`);
    (out as Record<string, unknown>)[key] = v;
  }
  for (const key of positiveSeconds) {
    const v = given[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new OutboxConfigError(key, v, 'must be a number of seconds > 0');
    (out as Record<string, unknown>)[key] = v;
  }
  for (const key of ['bulk', 'relayUnderRowLocks'] as const) {
    if (input[key] === undefined) continue;
    if (typeof input[key] !== 'boolean') throw new OutboxConfigError(key, input[key], 'must be a boolean');
    out[key] = input[key];
  }
  const pubsub = input.pubsubName ?? publisherPubsub ?? DEFAULTS.pubsubName;
  checkPubsubName(pubsub);
  out.pubsubName = pubsub as string;
  if (out.maximumRetryInterval < out.minimumRetryInterval) {
    throw new OutboxConfigError('maximumRetryInterval', out.maximumRetryInterval, `must be >= minimumRetryInterval (${out.minimumRetryInterval})`);
  }
  return out;
}
