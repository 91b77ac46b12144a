/**
 * The emulator's one error class. `code` says what went wrong in a stable, testable way;
 * `details` carries the structured fields (the option, the expression, the app id, ...).
 */

export type EmulatorErrorCode =
  /** An option or argument is invalid: details name it, the value given and the rule. */
  | 'INVALID_OPTION'
  /** A subscription's `match` uses CEL the emulator does not implement. */
  | 'UNSUPPORTED_MATCH'
  /** GET /dapr/subscribe could not be called or its answer could not be read. */
  | 'DISCOVERY_FAILED'
  /** The emulator was stopped (or not started) when the call was made. */
  | 'NOT_RUNNING'
  /** An HTTP server could not listen. */
  | 'LISTEN_FAILED';

export class EmulatorError extends Error {
  readonly code: EmulatorErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: EmulatorErrorCode, message: string, fields: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'EmulatorError';
    this.code = code;
    this.details = fields.details ?? {};
  }

  /** `resiliency.retries must be an integer >= 0, got -1` */
  static invalidOption(option: string, value: unknown, rule: string): EmulatorError {
    return new EmulatorError('INVALID_OPTION', `${option} ${rule}, got ${describe(value)}`, {
      details: { option, value, rule },
    });
  }
}

/** A short, safe rendering of a value for an error message. */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return String(value);
  }
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
