/**
 * Answers as daprd's HTTP server writes them (Go net/http): JSON errors, empty 204s, and the
 * text/plain answers of http.Error (body + newline, nosniff).
 */
import http from 'node:http';
import { ApiError } from './dapr-errors';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export const answers = {
  empty: (): HttpAnswer => ({ status: 204, headers: {}, body: Buffer.alloc(0) }),
  json: (status: number, text: string): HttpAnswer => ({
    status,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(text, 'utf8'),
  }),
  apiError: (err: ApiError): HttpAnswer => answers.json(err.status, err.body),
  /** Go's http.Error. */
  plainError: (status: number, text: string): HttpAnswer => ({
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' },
    body: Buffer.from(`${text}\n`, 'utf8'),
  }),
};

/** Reads a request body (up to `limit` bytes, daprd's default max body size being 4 MiB). */
export function readBody(req: http.IncomingMessage, limit = 4 * 1024 * 1024): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      else chunks.push(chunk);
    });
    let ended = false;
    req.on('end', () => {
      ended = true;
      resolve(tooLarge ? 'too-large' : Buffer.concat(chunks));
    });
    req.on('error', reject);
    // A connection closed mid-body (closeConnections, stop) ends the request without 'end'.
    req.on('close', () => {
      if (!ended) reject(new Error('the request was aborted before its body was read'));
    });
  });
}

export function writeAnswer(res: http.ServerResponse, answer: HttpAnswer): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = { ...answer.headers };
  if (answer.status !== 204) headers['content-length'] = String(answer.body.length);
  res.writeHead(answer.status, headers);
  res.end(answer.status === 204 ? undefined : answer.body);
}
