/**
 * The library's few error classes. Each has a stable `name`, structured fields and, where an
 * underlying failure exists, `cause`.
 */

/** Base class of every error this library throws. */
export class OutboxError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OutboxError';
  }
}

/** An option given to a factory is invalid: names the option, the value given and the rule. */
export class OutboxConfigError extends OutboxError {
  readonly option: string;
  readonly value: unknown;
  readonly rule: string;
  constructor(option: string, value: unknown, rule: string) {
    super(`${option} ${rule}, got ${describe(value)}`);
    this.name = 'OutboxConfigError';
    this.option = option;
    this.value = value;
    this.rule = rule;
  }
}

/** An event cannot be published (no topic, not serialisable, too large, ...). Nothing was written. */
export class EventValidationError extends OutboxError {
  readonly eventId: string | undefined;
  readonly topic: string | undefined;
  readonly reason: string;
  constructor(reason: string, fields: { eventId?: string; topic?: string; cause?: unknown } = {}) {
    super(`invalid integration event${fields.topic ? ` for topic '${fields.topic}'` : ''}: ${reason}`, {
      cause: fields.cause,
    });
    this.name = 'EventValidationError';
    this.eventId = fields.eventId;
    this.topic = fields.topic;
    this.reason = reason;
  }
}

/**
 * A publisher could not hand a message to the broker. `permanent` marks failures that retrying
 * cannot fix (the sidecar rejected the request as malformed or forbidden).
 */
export class PublishError extends OutboxError {
  readonly topic: string;
  readonly pubsubName: string;
  readonly status: number | undefined;
  readonly permanent: boolean;
  constructor(
    message: string,
    fields: { topic: string; pubsubName: string; status?: number; permanent?: boolean; cause?: unknown },
  ) {
    super(message, { cause: fields.cause });
    this.name = 'PublishError';
    this.topic = fields.topic;
    this.pubsubName = fields.pubsubName;
    this.status = fields.status;
    this.permanent = fields.permanent ?? false;
  }
}

/**
 * A unit of work could not begin, write or commit (its writes and events were discarded), or it
 * was used after it completed. `status` is the HTTP status a request should get for it (Express's
 * error handler reads it): 503 when the database's write lock could not be had in time, else 500.
 */
export class UnitOfWorkError extends OutboxError {
  readonly phase: UnitOfWorkPhase;
  readonly status: number;
  constructor(phase: UnitOfWorkPhase, cause: unknown, fields: { status?: number } = {}) {
    super(`unit of work failed during ${phase}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'UnitOfWorkError';
    this.phase = phase;
    this.status = fields.status ?? 500;
  }
}

/** Where a unit of work failed: opening it, writing its events, committing, or publishing after it completed. */
export type UnitOfWorkPhase = 'begin' | 'flush' | 'commit' | 'publish';

/**
 * Thrown by a subscription handler (or its validation hook) for a message that can never be
 * processed: the router answers DROP instead of RETRY.
 */
export class DropError extends OutboxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DropError';
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
