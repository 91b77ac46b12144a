import type { DaprClient } from '@dapr/dapr';
import { OutboxConfigError, PublishError } from '../../errors';
import type { BulkPublishResult, OutboxMessage, Publisher } from '../../ports/publisher';

/** Options of `new DaprPublisher()`. */
export interface DaprPublisherOptions {
  /** Pubsub component name for events that carry none, at most 255 characters. Default 'pubsub'. */
  pubsubName?: string;
  /** Sidecar host. Default: env DAPR_HOST, else '127.0.0.1'. */
  daprHost?: string;
  /** Sidecar HTTP port. Default: env DAPR_HTTP_PORT, else 3500. */
  daprPort?: string | number;
  /** Sidecar API token (sent as `dapr-api-token`). Default: env DAPR_API_TOKEN. */
  daprApiToken?: string;
  /** Longest wait for one publish call, milliseconds. Default 10000. */
  timeoutMs?: number;
  /** A DaprClient of your own (HTTP protocol). Default: one made from the options above. */
  client?: DaprClient;
}

const ZERO_TRACE = /^00-0{32}-0{16}-00$/;

/**
 * Publishes outbox messages through the Dapr sidecar with @dapr/dapr's DaprClient.
 *
 * - The CloudEvent id is pinned to the event id (`metadata.cloudevent.id`), so every attempt of an
 *   event reaches subscribers with the same id and their inbox can drop repeats.
 * - The SDK resolves `{ error }` instead of throwing; that is turned into a PublishError here.
 * - Bulk publish reads `failedEntries` from the sidecar's answer itself (the SDK reports none,
 *   js-sdk#703), and pins each entry's id by sending it as a CloudEvent.
 *
 * ```ts
 * const outbox = createOutbox({ sequelize, publisher: new DaprPublisher({ pubsubName: 'pubsub' }) });
 * ```
 */
export class DaprPublisher implements Publisher {
  readonly pubsubName: string;
  readonly client: DaprClient;
  private readonly timeoutMs: number;
  private readonly ownsClient: boolean;

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
    this.ownsClient = !options.client;
    if (options.client) {
      this.client = options.client;
    } else {
      // Loaded here so that the core and users of other publishers never load the SDK.
      const dapr = require('@dapr/dapr') as typeof import('@dapr/dapr');
      const quiet = { error() {}, warn() {}, info() {}, verbose() {}, debug() {} };
      this.client = new dapr.DaprClient({
        daprHost: options.daprHost ?? process.env.DAPR_HOST ?? '127.0.0.1',
        daprPort: port,
        communicationProtocol: dapr.CommunicationProtocolEnum.HTTP,
        daprApiToken: options.daprApiToken ?? process.env.DAPR_API_TOKEN,
        isKeepAlive: true,
        logger: { level: dapr.LogLevel.Error, service: quiet },
      });
    }
  }

  async publish(message: OutboxMessage): Promise<void> {
    const metadata: Record<string, string> = { 'cloudevent.id': message.id };
    if (message.traceparent && !ZERO_TRACE.test(message.traceparent)) {
      metadata['cloudevent.traceparent'] = message.traceparent;
      metadata['cloudevent.traceid'] = message.traceparent;
      if (message.tracestate) metadata['cloudevent.tracestate'] = message.tracestate;
    }
    const result = await this.withTimeout(
      // The SDK puts both names into the URL as they are; they go in encoded.
      this.client.pubsub.publish(...publishPath(message.pubsubName, message.topic), JSON.parse(message.content), {
        contentType: 'application/json',
        metadata,
      }),
      message,
    );
    if (result && (result as { error?: unknown }).error) throw toPublishError((result as { error: unknown }).error, message);
  }

  async publishBulk(messages: readonly OutboxMessage[]): Promise<BulkPublishResult> {
    // A message whose content is not JSON fails alone (permanently), before the request is built.
    const unreadable: Array<{ id: string; error: Error }> = [];
    const entries: Array<{ entryId: string; contentType: string; event: Record<string, unknown> }> = [];
    for (const m of messages) {
      try {
        entries.push({ entryId: m.id, contentType: 'application/cloudevents+json', event: cloudEventOf(m) });
      } catch (err) {
        unreadable.push({ id: m.id, error: new PublishError(`event ${m.id} is not valid JSON`, { topic: m.topic, pubsubName: m.pubsubName, permanent: true, cause: err }) });
      }
    }
    if (entries.length === 0) return { failed: unreadable };
    const first = messages.find((m) => m.id === entries[0]!.entryId)!;
    const http = (this.client as unknown as { daprClient: { executeWithApiVersion(v: string, url: string, params: object): Promise<unknown> } }).daprClient;
    const url = `/publish/bulk/${publishPath(first.pubsubName, first.topic).join('/')}`;
    try {
      await this.withTimeout(
        http.executeWithApiVersion('v1.0-alpha1', url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: entries }),
        first,
      );
      return { failed: unreadable };
    } catch (err) {
      const answer = parseSdkError(err);
      const body = answer?.body as { failedEntries?: Array<{ entryId?: string; error?: string }> } | undefined;
      if (answer?.status === 500 && Array.isArray(body?.failedEntries)) {
        const known = new Set(messages.map((m) => m.id));
        return {
          failed: unreadable.concat(body!.failedEntries
            .filter((f) => typeof f.entryId === 'string' && known.has(f.entryId))
            .map((f) => ({ id: f.entryId!, error: new PublishError(`bulk entry failed: ${f.error ?? 'unknown error'}`, { topic: first.topic, pubsubName: first.pubsubName, status: 500 }) }))),
        };
      }
      throw toPublishError(err, first, entries.length);
    }
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.stop().catch(() => {});
  }

  private withTimeout<T>(p: Promise<T>, message: OutboxMessage): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new PublishError(`publish to ${message.pubsubName}/${message.topic} timed out after ${this.timeoutMs} ms`, { topic: message.topic, pubsubName: message.pubsubName })),
        this.timeoutMs,
      );
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

/**
 * Pubsub name and topic as path segments of a publish URL, percent-encoded ('/' in a topic stays
 * a separator: daprd reads the topic as the rest of the path).
 *
 * daprd decodes these path parameters twice when the path is exactly how Go itself would encode
 * it (its router then works on the decoded path, and the parameters are unescaped once more), so
 * a '%' in a name would be decoded a second time: `rate%20100%25` becomes `rate 100%`, then a 400.
 * Any escape Go would not write makes Go keep the raw path and decode once; escaping one letter
 * of the pubsub name does that without changing what it decodes to.
 */
function publishPath(pubsubName: string, topic: string): [string, string] {
  const encodedTopic = topic.split('/').map(encodeURIComponent).join('/');
  const letter = /[A-Za-z0-9]/.exec(pubsubName);
  if (!(pubsubName + topic).includes('%') || !letter) return [encodeURIComponent(pubsubName), encodedTopic];
  const i = letter.index;
  const escaped = `%${pubsubName.charCodeAt(i).toString(16).toUpperCase()}`;
  return [encodeURIComponent(pubsubName.slice(0, i)) + escaped + encodeURIComponent(pubsubName.slice(i + 1)), encodedTopic];
}

/** The event as a CloudEvent of our own: daprd keeps its id and fills source, type, time. */
function cloudEventOf(m: OutboxMessage): Record<string, unknown> {
  const ce: Record<string, unknown> = { specversion: '1.0', id: m.id, datacontenttype: 'application/json', data: JSON.parse(m.content) };
  if (m.traceparent && !ZERO_TRACE.test(m.traceparent)) {
    ce.traceid = m.traceparent;
    ce.traceparent = m.traceparent;
    ce.tracestate = m.tracestate ?? '';
  }
  return ce;
}

/** The SDK's HTTP errors carry `{"error","error_msg","status"}` as their message. */
function parseSdkError(err: unknown): { status: number; body: unknown; text: string } | undefined {
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : undefined;
  if (!message) return undefined;
  try {
    const parsed = JSON.parse(message) as { status?: number; error_msg?: string };
    if (typeof parsed.status !== 'number') return undefined;
    let body: unknown = parsed.error_msg;
    try {
      body = JSON.parse(parsed.error_msg ?? '');
    } catch {
      /* not JSON */
    }
    return { status: parsed.status, body, text: parsed.error_msg ?? '' };
  } catch {
    return undefined;
  }
}

/**
 * 4xx answers (bad metadata, unknown pubsub, forbidden topic) cannot succeed on retry: permanent.
 * Except 408 and 429 (a timeout, a rate limit: later may work) and a 413 to a bulk call of
 * several entries (smaller calls may fit; sendMessages splits it). 5xx, timeouts and connection
 * errors are transient.
 */
function toPublishError(err: unknown, m: OutboxMessage, entries = 1): PublishError {
  if (err instanceof PublishError) return err;
  const answer = parseSdkError(err);
  const detail = answer ? `${answer.status} ${answer.text}`.trim() : err instanceof Error ? err.message : String(err);
  return new PublishError(`publish to ${m.pubsubName}/${m.topic} failed: ${detail}`, {
    topic: m.topic,
    pubsubName: m.pubsubName,
    status: answer?.status,
    permanent: answer !== undefined && isPermanentStatus(answer.status, entries),
    cause: err,
  });
}

function isPermanentStatus(status: number, entries: number): boolean {
  if (status < 400 || status >= 500 || status === 408 || status === 429) return false;
  return !(status === 413 && entries > 1);
}
