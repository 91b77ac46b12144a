/**
 * How the router answers the sidecar (docs/dapr-pubsub-contract.md, section 4):
 * 2xx `{"status":"SUCCESS"}`, `{"status":"RETRY"}` or `{"status":"DROP"}`; bulk deliveries get
 * `{"statuses":[{"entryId","status"}]}`. The sidecar reads any non-2xx other than 404 as RETRY,
 * so a poison message is answered 200 + DROP, never 400.
 */
import type { ServerResponse } from 'node:http';

/** What a delivery ends in, as the sidecar understands it. */
export type DaprStatus = 'SUCCESS' | 'RETRY' | 'DROP';

export const SUCCESS: DaprStatus = 'SUCCESS';
export const RETRY: DaprStatus = 'RETRY';
export const DROP: DaprStatus = 'DROP';

/** One entry of a bulk answer. */
export interface BulkEntryStatus {
  entryId: string;
  status: DaprStatus;
}

/**
 * Writes a JSON answer with plain node calls (no express helpers), so the router also works in an
 * Express 4 app. Does nothing when the client is gone or the answer was already sent.
 */
export function sendJson(res: ServerResponse, httpStatus: number, body: unknown): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.statusCode = httpStatus;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** The three answers of a single delivery, built once: every delivery sends one. */
const STATUS_ANSWERS: Record<string, { body: string; headers: Record<string, string> }> = Object.fromEntries(
  [SUCCESS, RETRY, DROP].map((status) => {
    const body = JSON.stringify({ status });
    return [status, { body, headers: { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)) } }];
  }),
);

/** 200 with `{"status": status}`. */
export function answerStatus(res: ServerResponse, status: DaprStatus): void {
  const answer = STATUS_ANSWERS[status];
  if (!answer) return sendJson(res, 200, { status });
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  res.writeHead(200, answer.headers);
  res.end(answer.body);
}

/** 200 with one status per bulk entry, in the order the entries came. */
export function answerBulk(res: ServerResponse, statuses: readonly BulkEntryStatus[]): void {
  sendJson(res, 200, { statuses });
}

/**
 * 404: daprd drops the message (every entry of a bulk delivery). Used for unknown routes, and for
 * a bulk delivery so malformed that its entries cannot even be named.
 */
export function answerNotFound(res: ServerResponse, message: string): void {
  sendJson(res, 404, { error: 'NOT_FOUND', message });
}

/** 401 as daprd itself answers a missing or wrong token: text/plain `invalid api token`. */
export function answerUnauthorized(res: ServerResponse): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  res.statusCode = 401;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', '17');
  res.end('invalid api token');
}

/** 405 for a method other than POST on a delivery route (the sidecar only POSTs). */
export function answerMethodNotAllowed(res: ServerResponse, allow: string): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  res.setHeader('Allow', allow);
  sendJson(res, 405, { error: 'METHOD_NOT_ALLOWED', message: `use ${allow}` });
}
