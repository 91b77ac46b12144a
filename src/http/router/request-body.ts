/**
 * The delivery's body: read raw from the request, or taken from `req.body` when a body parser
 * (express.json(), express.raw(), ...) already consumed the stream. Reading stops at a limit: a
 * larger body is not buffered, the rest is drained and discarded.
 */
import type { IncomingMessage } from 'node:http';

export type RequestBody =
  /** The bytes as sent. */
  | { kind: 'bytes'; bytes: Buffer }
  /** A value an earlier body parser produced (express.json(): parsed JSON). */
  | { kind: 'parsed'; value: unknown }
  /** Over the limit; nothing was kept. */
  | { kind: 'too-large'; limit: number }
  /** Unreadable: an aborted request, an unsupported Content-Encoding. */
  | { kind: 'unreadable'; reason: string };

type ParsedRequest = IncomingMessage & { body?: unknown; _body?: boolean };

export function readRequestBody(req: IncomingMessage, limit: number): Promise<RequestBody> {
  const r = req as ParsedRequest;
  if (r._body === true || r.readableEnded) return Promise.resolve(alreadyRead(r, limit));

  const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding !== 'identity') {
    req.resume();
    return Promise.resolve({ kind: 'unreadable', reason: `unsupported Content-Encoding '${encoding}'` });
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.resolve({ kind: 'too-large', limit });
  }

  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const finish = (result: RequestBody): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > limit) {
        chunks.length = 0;
        finish({ kind: 'too-large', limit });
        // Keep the stream flowing with no listener: the rest is read and thrown away, so the
        // connection stays usable for the answer.
        req.resume();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish({ kind: 'bytes', bytes: Buffer.concat(chunks, total) });
    const onError = (err: Error): void => finish({ kind: 'unreadable', reason: `reading the body failed: ${err.message}` });
    const onClose = (): void => finish({ kind: 'unreadable', reason: 'the request was aborted before its body ended' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function alreadyRead(r: ParsedRequest, limit: number): RequestBody {
  const body = r.body;
  if (Buffer.isBuffer(body)) return body.length > limit ? { kind: 'too-large', limit } : { kind: 'bytes', bytes: body };
  if (typeof body === 'string') {
    const bytes = Buffer.from(body, 'utf8');
    return bytes.length > limit ? { kind: 'too-large', limit } : { kind: 'bytes', bytes };
  }
  if (body !== undefined && body !== null) return { kind: 'parsed', value: body };
  // Consumed by something that kept nothing: as good as an empty body.
  return { kind: 'bytes', bytes: Buffer.alloc(0) };
}
