/**
 * What the emulator saw and did, kept in arrays a test can read: every API request, every
 * publish, every delivery attempt, every dead-lettered and every dropped message.
 */

export type DeliveryOutcome = 'SUCCESS' | 'RETRY' | 'DROP';

/** One HTTP request to a sidecar API (publish, metadata, health, admin). */
export interface RequestRecord {
  /** App id of the sidecar that answered. */
  appId: string;
  method: string;
  /** Path and query as received. */
  path: string;
  status: number;
  at: Date;
}

/** One publish: a single publish request, or one entry of a bulk publish request. */
export interface PublishRecord {
  /** App id of the publishing sidecar (the envelope `source`). */
  appId: string;
  pubsubName: string;
  topic: string;
  /** HTTP status answered to the request (for bulk: to the whole request). */
  status: number;
  /** True when the message reached the broker. */
  accepted: boolean;
  /** The stored envelope, parsed; undefined for raw payloads and rejected requests. */
  envelope: Record<string, unknown> | undefined;
  /** The bytes stored in the broker (the request body when nothing was stored). */
  body: Buffer;
  contentType: string | undefined;
  metadata: Record<string, string>;
  at: Date;
  bulk: boolean;
  /** Bulk entries only. */
  entryId?: string;
  /** Why the publish (or this bulk entry) failed. */
  error?: string;
  /** Emulator-internal id of the broker message; links deliveries to their publish. */
  messageId?: string;
}

/** One attempt to hand a message to an app (or a decision taken before any HTTP call). */
export interface DeliveryRecord {
  /** The subscribing app (consumer group). */
  appId: string;
  pubsubName: string;
  topic: string;
  /** Path the message was POSTed to; '' when no HTTP call was made. */
  route: string;
  /** CloudEvent id the app saw (undefined when the message is not a CloudEvent). */
  eventId: string | undefined;
  messageId: string;
  /** 1 for the first attempt of this message to this app, counting retries and redeliveries. */
  attempt: number;
  /** Undefined when no HTTP answer was received (connection error, or no call made). */
  httpStatus: number | undefined;
  outcome: DeliveryOutcome;
  error?: string;
  at: Date;
  bulk: boolean;
  /** Bulk deliveries only. */
  entryId?: string;
  /**
   * True on the attempts of a late duplicate (faults.reorderDeliveries): the app had acked this
   * message before. Their `attempt` numbers go on from the acked attempt.
   */
  late?: true;
}

/** A message sent to a subscription's dead-letter topic. */
export interface DeadLetterRecord {
  appId: string;
  pubsubName: string;
  topic: string;
  deadLetterTopic: string;
  eventId: string | undefined;
  messageId: string;
  /** The original bytes, as published again to the dead-letter topic. */
  body: Buffer;
  reason: string;
  at: Date;
}

/** A message the emulator gave up on without an acknowledgement from the app. */
export interface DroppedRecord {
  appId: string;
  pubsubName: string;
  topic: string;
  eventId: string | undefined;
  messageId: string;
  body: Buffer;
  reason: string;
  at: Date;
}

export class Recorder {
  readonly requests: RequestRecord[] = [];
  readonly publishes: PublishRecord[] = [];
  readonly deliveries: DeliveryRecord[] = [];
  readonly deadLetters: DeadLetterRecord[] = [];
  readonly dropped: DroppedRecord[] = [];

  /** @param limit entries kept per array, the oldest going first; 0 = no limit. */
  constructor(private readonly limit = 0) {}

  /**
   * Drops the oldest entries beyond the limit, so a long-running CLI does not grow without
   * bound. It trims once an array exceeds the limit by a tenth, keeping the cost per record
   * constant (splicing one entry off a 10 000-entry array on every publish would not be).
   */
  trim(): void {
    if (this.limit <= 0) return;
    const slack = Math.max(1, Math.ceil(this.limit / 10));
    for (const list of [this.requests, this.publishes, this.deliveries, this.deadLetters, this.dropped] as unknown[][]) {
      if (list.length > this.limit + slack) list.splice(0, list.length - this.limit);
    }
  }

  /** Empties every record array in place (references held by callers stay valid). */
  clear(): void {
    this.requests.length = 0;
    this.publishes.length = 0;
    this.deliveries.length = 0;
    this.deadLetters.length = 0;
    this.dropped.length = 0;
  }
}
