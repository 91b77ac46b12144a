/**
 * The app API token (contract section 4): with APP_API_TOKEN set on the sidecar, every sidecar ->
 * app request carries `dapr-api-token`, and the app must check it itself.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { OutboxConfigError } from '../../errors';

/** The header daprd sends the app API token in. */
export const API_TOKEN_HEADER = 'dapr-api-token';

/**
 * The token to require: the option when given, else env APP_API_TOKEN (unset or empty = none).
 * `null` turns the check off even when the env var is set.
 */
export function resolveAppApiToken(option: string | null | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (option === null) return undefined;
  if (option !== undefined) {
    if (typeof option !== 'string' || option === '') throw new OutboxConfigError('appApiToken', option, 'must be a non-empty string (or null to turn the check off)');
    return option;
  }
  const fromEnv = env.APP_API_TOKEN;
  return fromEnv ? fromEnv : undefined;
}

/**
 * A checker for one expected token. Both sides are hashed to 32 bytes first, so the comparison
 * takes the same time whatever the given token's length or content (timingSafeEqual needs
 * buffers of equal length, and comparing lengths first would leak the token's length).
 */
export function tokenChecker(expected: string): (req: IncomingMessage) => boolean {
  const want = digest(expected);
  return (req) => {
    const given = req.headers[API_TOKEN_HEADER];
    const value = Array.isArray(given) ? given[0] : given;
    if (typeof value !== 'string') return false;
    return timingSafeEqual(digest(value), want);
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
