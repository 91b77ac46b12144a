/**
 * Load generation on loopback only (127.0.0.1), bounded in count and in time. A keep-alive
 * node:http agent per run, so connection set-up is not what is measured.
 */
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';

export const LOOPBACK = '127.0.0.1';

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One POST on an agent; resolves with the status and the whole body (read, so the socket is reused). */
export function post(agent: Agent, port: number, path: string, body: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return send(agent, port, 'POST', path, body, headers);
}

export function send(agent: Agent, port: number, method: string, path: string, body: string | undefined, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: LOOPBACK,
        port,
        method,
        path,
        agent,
        headers: body === undefined ? headers : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end(body);
  });
}

export interface ClosedLoopOptions {
  port: number;
  path: string;
  /** Concurrent clients, each sending its next request when the previous answer arrived. */
  concurrency: number;
  /** Stop sending after this long, milliseconds. */
  durationMs: number;
  /** Stop sending after this many requests in all. */
  maxRequests: number;
  /** The body of request number `i` (unique ids, accounts...). */
  body: (i: number) => string;
  headers?: Record<string, string>;
  /** Which answers count as completed. Default: a 2xx status. */
  ok?: (status: number, body: string) => boolean;
}

export interface LoadResult {
  completed: number;
  errors: number;
  elapsedMs: number;
  /** Completed requests per second. */
  rps: number;
  firstError?: string;
}

/**
 * A closed loop (as autocannon does): `concurrency` clients on keep-alive sockets, each
 * sending its next request as soon as it has the answer to the previous one.
 */
export async function closedLoop(o: ClosedLoopOptions): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  const ok = o.ok ?? ((s: number) => s >= 200 && s < 300);
  let next = 0;
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + o.durationMs;
  const client = async () => {
    while (next < o.maxRequests && performance.now() < deadline) {
      const i = next++;
      try {
        const answer = await post(agent, o.port, o.path, o.body(i), o.headers);
        if (ok(answer.status, answer.body)) completed++;
        else {
          errors++;
          firstError ??= `${answer.status} ${answer.body.slice(0, 200)}`;
        }
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, client));
  const elapsedMs = performance.now() - start;
  agent.destroy();
  return { completed, errors, elapsedMs, rps: (completed * 1000) / elapsedMs, firstError };
}

/**
 * An open loop at a steady rate: call number `i` starts at `start + i / rate` whatever the
 * previous calls are doing, so a slow answer does not lower the offered load (no coordinated
 * omission). Resolves when every call has settled.
 */
export async function openLoop(rate: number, count: number, call: (i: number) => Promise<void>): Promise<{ errors: number; firstError?: string; lagMs: number }> {
  const interval = 1000 / rate;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let lagMs = 0;
  for (let i = 0; i < count; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    lagMs = Math.max(lagMs, performance.now() - due);
    pending.push(
      call(i).catch((err: unknown) => {
        errors++;
        firstError ??= (err as Error).message;
      }),
    );
  }
  await Promise.all(pending);
  return { errors, firstError, lagMs };
}

/** Listens on loopback on a free port; resolves with the port. */
export async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** Closes a server, dropping idle keep-alive sockets so close() does not wait for them. */
export async function close(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
