import type { DaprClient } from '@dapr/dapr';
import { OutboxConfigError, PublishError } from '../../errors';
import type { BulkPublishResult, OutboxMessage, Publisher } from '../../ports/publisher';
import { bulkEntryJson, cloudEventJson, cloudEventOf, entryMetadata, isKeyed, keyedMetadata, metadataQuery, publishMetadata, publishPath, sequenceText, type KeyedMessage } from './publish-requests';
import { SidecarHttp, type SidecarAnswer } from './sidecar-http';

/** Options of `new DaprPublisher()`. */
export interface DaprPublisherOptions {
  /** Pubsub component name for events that carry none, at most 255 characters. Default 'pubsub'. */
  pubsubName?: string;
  /** Sidecar host. Default: env DAPR_HOST, else '127.0.0.1'. Not used with `client`. */
  daprHost?: string;
  /** Sidecar HTTP port. Default: env DAPR_HTTP_PORT, else 3500. Not used with `client`. */
  daprPort?: string | number;
  /** Sidecar API token (sent as `dapr-api-token`). Default: env DAPR_API_TOKEN. Not used with `client`. */
  daprApiToken?: string;
  /** Longest wait for one publish call, milliseconds. Default 10000. */
  timeoutMs?: number;
  /**
   * A @dapr/dapr DaprClient of your own (HTTP protocol), to publish through instead of the
   * publisher's own HTTP connections. Default: none. Not stopped by `close()`.
   */
  client?: DaprClient;
  /**
   * Publish metadata keys set to a keyed event's ordering key, so that the broker keeps the events
   * of one key in one partition (or session). Default `['partitionKey']` (Kafka, Event Hubs,
   * Pulsar); with Azure Service Bus sessions, `['partitionKey', 'SessionId']`. `[]` sets none.
   */
  orderingKeyMetadata?: readonly string[];
}

type BulkEntry = { entryId: string; contentType: string; event: Record<string, unknown>; metadata?: Record<string, string> };
type SdkHttp = { executeWithApiVersion(v: string, url: string, params: object): Promise<unknown> };

/**
 * Publishes outbox messages through the Dapr sidecar's HTTP publish API, with `node:http` and
 * kept-alive sockets, or through a DaprClient of yours when one is given.
 *
 * - The CloudEvent id is pinned to the event id (`metadata.cloudevent.id`), so every attempt of an
 *   event reaches subscribers with the same id and their inbox can drop repeats.
 * - The SDK resolves `{ error }` instead of throwing; that is turned into a PublishError here.
 * - Bulk publish reads `failedEntries` from the sidecar's answer itself (the SDK reports none,
 *   js-sdk#703), and pins each entry's id by sending it as a CloudEvent.
 * - A keyed event (an ordering key and a sequence number) goes out as a CloudEvent of its own with
 *   the `partitionkey` and `sequence` attributes (the CloudEvents Partitioning and Sequence
 *   extensions), and its key as the publish metadata named by `orderingKeyMetadata`.
 *
 * ```ts
 * const outbox = createOutbox({ sequelize, publisher: new DaprPublisher({ pubsubName: 'pubsub' }) });
 * ```
 */
export class DaprPublisher implements Publisher {
  readonly pubsubName: string;
  /** The DaprClient given in the options; undefined when the publisher speaks HTTP itself. */
  readonly client: DaprClient | undefined;
  private readonly timeoutMs: number;
  private readonly http: SidecarHttp | undefined;
  private readonly keyMetadata: readonly string[];

  constructor(options: DaprPublisherOptions = {}) {
    const pubsubName: unknown = options.pubsubName ?? 'pubsub';
    if (typeof pubsubName !== 'string' || pubsubName.trim() === '') throw new OutboxConfigError('pubsubName', options.pubsubName, 'must be a non-empty string');
    // The outbox stores it with every event, in a VARCHAR(255) column.
    if (pubsubName.length > 255) throw new OutboxConfigError('pubsubName', pubsubName, `must be at most 255 characters (the outbox's pubsub_name column); it has ${pubsubName.length}`);
    this.pubsubName = pubsubName;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new OutboxConfigError('timeoutMs', options.timeoutMs, 'must be a number of milliseconds > 0');
    const port = String(options.daprPort ?? process.env.DAPR_HTTP_PORT ?? '3500');
    if (!/^\d{1,5}$/.test(port)) throw new OutboxConfigError('daprPort', options.daprPort ?? process.env.DAPR_HTTP_PORT, 'must be a TCP port number');
    this.keyMetadata = checkKeyMetadata(options.orderingKeyMetadata);
    this.client = options.client;
    if (!options.client) {
      this.http = new SidecarHttp({
        host: options.daprHost ?? process.env.DAPR_HOST ?? '127.0.0.1',
        port: Number(port),
        apiToken: options.daprApiToken ?? process.env.DAPR_API_TOKEN,
      });
    }
  }

  async publish(message: OutboxMessage): Promise<void> {
    const data = parseContent(message);
    if (isKeyed(message)) return this.publishKeyed(message, data);
    const [pubsub, topic] = publishPath(message.pubsubName, message.topic);
    const metadata = publishMetadata(message);
    if (this.http) {
      // The stored text is the body: it was checked to be JSON, and re-serialising it buys nothing.
      const answer = await this.http
        .post(`/v1.0/publish/${pubsub}/${topic}?${metadataQuery(metadata)}`, message.content, this.timeoutMs, () => this.timeoutError(message))
        .catch((err: unknown) => Promise.reject(toPublishError(err, message)));
      if (!isSuccess(answer.status)) throw answerError(answer, message);
      return;
    }
    const result = await this.withTimeout(
      // The SDK puts both names into the URL as they are; they go in encoded.
      this.client!.pubsub.publish(pubsub, topic, data as object, { contentType: 'application/json', metadata }),
      message,
    );
    if (result && (result as { error?: unknown }).error) throw sdkError((result as { error: unknown }).error, message);
  }

  async publishBulk(messages: readonly OutboxMessage[]): Promise<BulkPublishResult> {
    // A message whose content is not JSON (or whose sequence is not a number) fails alone
    // (permanently), before the request is built.
    const unreadable: Array<{ id: string; error: Error }> = [];
    const readable: Array<{ m: OutboxMessage; data: unknown }> = [];
    for (const m of messages) {
      try {
        const data = parseContent(m);
        if (isKeyed(m)) checkSequence(m);
        readable.push({ m, data });
      } catch (err) {
        unreadable.push({ id: m.id, error: err as Error });
      }
    }
    if (readable.length === 0) return { failed: unreadable };
    const first = readable[0]!.m;
    const path = `/publish/bulk/${publishPath(first.pubsubName, first.topic).join('/')}`;
    const answer = this.http
      ? await this.bulkOverHttp(path, readable.map((r) => r.m))
      : await this.bulkOverSdk(path, first, readable.map((r) => this.sdkBulkEntry(r.m, r.data)));
    if (isSuccess(answer.status)) return { failed: unreadable };
    const failed = failedEntriesOf(answer, messages);
    if (failed) return { failed: unreadable.concat(failed) };
    throw answerError(answer, first, readable.length);
  }

  /**
   * Asks the sidecar's health route (`GET /v1.0/healthz`: 204 once its components are loaded).
   * Resolves when it answered healthy; rejects saying what it answered, or that it did not answer
   * within `timeoutMs`.
   */
  async checkHealth(timeoutMs: number): Promise<void> {
    const late = () => new Error(`no answer within ${timeoutMs} ms`);
    if (!this.http) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(late()), timeoutMs)));
      const healthy = await Promise.race([this.client!.health.isHealthy(), timeout])
        .catch((err: unknown) => {
          throw new Error(`the sidecar did not answer its health check: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        })
        .finally(() => clearTimeout(timer));
      if (!healthy) throw new Error('the sidecar reports itself unhealthy');
      return;
    }
    const answer = await this.http.get('/v1.0/healthz', timeoutMs, late).catch((err: unknown) => {
      throw new Error(`the sidecar did not answer its health check: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
    if (!isSuccess(answer.status)) throw new Error(`the sidecar's health check answered ${`${answer.status} ${answer.text}`.trim()}`);
  }

  async close(): Promise<void> {
    this.http?.close();
  }

  /**
   * A keyed event: its own CloudEvent (`application/cloudevents+json`, which daprd keeps, filling
   * in source, type and time) with the ordering attributes, and the key as publish metadata. Over
   * HTTP the stored content is spliced into the CloudEvent text, not serialised again.
   */
  private async publishKeyed(message: KeyedMessage, data: unknown): Promise<void> {
    checkSequence(message);
    const [pubsub, topic] = publishPath(message.pubsubName, message.topic);
    const metadata = keyedMetadata(message, this.keyMetadata);
    if (this.http) {
      const answer = await this.http
        .post(`/v1.0/publish/${pubsub}/${topic}?${metadataQuery(metadata)}`, cloudEventJson(message), this.timeoutMs, () => this.timeoutError(message), CLOUDEVENT)
        .catch((err: unknown) => Promise.reject(toPublishError(err, message)));
      if (!isSuccess(answer.status)) throw answerError(answer, message);
      return;
    }
    const result = await this.withTimeout(this.client!.pubsub.publish(pubsub, topic, cloudEventOf(message, data), { contentType: CLOUDEVENT, metadata }), message);
    if (result && (result as { error?: unknown }).error) throw sdkError((result as { error: unknown }).error, message);
  }

  private sdkBulkEntry(m: OutboxMessage, data: unknown): BulkEntry {
    const entry: BulkEntry = { entryId: m.id, contentType: CLOUDEVENT, event: cloudEventOf(m, data) };
    if (isKeyed(m)) entry.metadata = entryMetadata(m, this.keyMetadata);
    return entry;
  }

  /** The entries go out as text built around each stored content; see bulkEntryJson. */
  private bulkOverHttp(path: string, messages: OutboxMessage[]): Promise<SidecarAnswer> {
    const body = `[${messages.map((m) => bulkEntryJson(m, this.keyMetadata)).join(',')}]`;
    return this.http!
      .post(`/v1.0-alpha1${path}`, body, this.timeoutMs, () => this.timeoutError(messages[0]!))
      .catch((err: unknown) => Promise.reject(toPublishError(err, messages[0]!)));
  }

  /** The SDK's bulk call would lose the failed entries (js-sdk#703): its HTTP layer is called. */
  private async bulkOverSdk(path: string, first: OutboxMessage, entries: BulkEntry[]): Promise<SidecarAnswer> {
    const http = (this.client as unknown as { daprClient: SdkHttp }).daprClient;
    try {
      await this.withTimeout(http.executeWithApiVersion('v1.0-alpha1', path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: entries }), first);
      return { status: 204, text: '' };
    } catch (err) {
      const answer = parseSdkError(err);
      if (answer) return answer;
      throw toPublishError(err, first);
    }
  }

  private timeoutError(message: OutboxMessage): PublishError {
    return new PublishError(`publish to ${message.pubsubName}/${message.topic} timed out after ${this.timeoutMs} ms`, { topic: message.topic, pubsubName: message.pubsubName });
  }

  private withTimeout<T>(p: Promise<T>, message: OutboxMessage): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.timeoutError(message)), this.timeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

const CLOUDEVENT = 'application/cloudevents+json';

/** Metadata keys daprd reads itself: setting them to an ordering key would change how it publishes. */
const RESERVED_METADATA = /^(rawpayload|ttlinseconds|cloudevent\..*)$/i;

function checkKeyMetadata(value: unknown): readonly string[] {
  if (value === undefined) return ['partitionKey'];
  if (!Array.isArray(value) || value.some((k) => typeof k !== 'string' || k.trim() === '')) {
    throw new OutboxConfigError('orderingKeyMetadata', value, "must be an array of metadata key names (non-empty strings), e.g. ['partitionKey']");
  }
  const reserved = (value as string[]).find((k) => RESERVED_METADATA.test(k));
  if (reserved !== undefined) {
    throw new OutboxConfigError('orderingKeyMetadata', value, `must not name a key daprd reads itself (rawPayload, ttlInSeconds, cloudevent.*): ${JSON.stringify(reserved)}`);
  }
  return Object.freeze([...new Set(value as string[])]);
}

/** A sequence the receiving side could not read fails for good: it would never be placed in order. */
function checkSequence(m: KeyedMessage): void {
  if (sequenceText(m) !== undefined) return;
  throw new PublishError(`event ${m.id} has ordering key ${JSON.stringify(m.orderingKey)} but sequence ${String(m.sequence)}, not a positive integer`, {
    topic: m.topic,
    pubsubName: m.pubsubName,
    permanent: true,
  });
}

/** The content parsed: a content that is not JSON can never be published, so it fails for good. */
function parseContent(m: OutboxMessage): unknown {
  try {
    return JSON.parse(m.content);
  } catch (err) {
    throw new PublishError(`event ${m.id} is not valid JSON`, { topic: m.topic, pubsubName: m.pubsubName, permanent: true, cause: err });
  }
}

function isSuccess(status: number): boolean {
  return status >= 200 && status <= 399;
}

/**
 * The entries a bulk call reports as not published (a 500 listing `failedEntries`); every other
 * entry was. Undefined when the answer is not such a list.
 */
function failedEntriesOf(answer: SidecarAnswer, messages: readonly OutboxMessage[]): Array<{ id: string; error: Error }> | undefined {
  if (answer.status !== 500) return undefined;
  let body: { failedEntries?: Array<{ entryId?: string; error?: string }> } | undefined;
  try {
    body = JSON.parse(answer.text) as typeof body;
  } catch {
    return undefined;
  }
  if (!Array.isArray(body?.failedEntries)) return undefined;
  const first = messages[0]!;
  const known = new Set(messages.map((m) => m.id));
  return body.failedEntries
    .filter((f) => typeof f.entryId === 'string' && known.has(f.entryId))
    .map((f) => ({ id: f.entryId!, error: new PublishError(`bulk entry failed: ${f.error ?? 'unknown error'}`, { topic: first.topic, pubsubName: first.pubsubName, status: 500 }) }));
}

/** The SDK's HTTP errors carry `{"error","error_msg","status"}` as their message. */
function parseSdkError(err: unknown): SidecarAnswer | undefined {
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : undefined;
  if (!message) return undefined;
  try {
    const parsed = JSON.parse(message) as { status?: number; error_msg?: string };
    if (typeof parsed.status !== 'number') return undefined;
    return { status: parsed.status, text: parsed.error_msg ?? '' };
  } catch {
    return undefined;
  }
}

/** What the SDK resolved as `{ error }`: an answer of the sidecar, or a connection error. */
function sdkError(err: unknown, m: OutboxMessage): PublishError {
  const answer = parseSdkError(err);
  return answer ? answerError(answer, m, 1, err) : toPublishError(err, m);
}

/**
 * 4xx answers (bad metadata, unknown pubsub, forbidden topic) cannot succeed on retry: permanent.
 * Except 408 and 429 (a timeout, a rate limit: later may work) and a 413 to a bulk call of
 * several entries (smaller calls may fit; sendMessages splits it). 5xx are transient.
 */
function answerError(answer: SidecarAnswer, m: OutboxMessage, entries = 1, cause?: unknown): PublishError {
  return new PublishError(`publish to ${m.pubsubName}/${m.topic} failed: ${`${answer.status} ${answer.text}`.trim()}`, {
    topic: m.topic,
    pubsubName: m.pubsubName,
    status: answer.status,
    permanent: isPermanentStatus(answer.status, entries),
    cause,
  });
}

/** No answer at all (a connection error): transient. Timeouts are PublishErrors already. */
function toPublishError(err: unknown, m: OutboxMessage): PublishError {
  if (err instanceof PublishError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new PublishError(`publish to ${m.pubsubName}/${m.topic} failed: ${detail}`, { topic: m.topic, pubsubName: m.pubsubName, cause: err });
}

function isPermanentStatus(status: number, entries: number): boolean {
  if (status < 400 || status >= 500 || status === 408 || status === 429) return false;
  return !(status === 413 && entries > 1);
}
