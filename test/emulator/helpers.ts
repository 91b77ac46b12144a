/**
 * Test helpers for the emulator suites: a raw HTTP client (no keep-alive, exact bytes) and a
 * scriptable subscriber app on an ephemeral port that records what it receives.
 */
import http from 'node:http';
import net from 'node:net';
import { DaprEmulator, DaprEmulatorOptions } from '../../src/testing';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** One HTTP request without connection reuse, so nothing stays open after it. */
export function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (body !== undefined) headers['content-length'] = String(body.length);
    const req = http.request(url, { method: opts.method ?? (body === undefined ? 'GET' : 'POST'), headers, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: buf, text: buf.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.end(body);
  });
}

/** POST /v1.0/publish/{pubsub}/{topic} with a JSON (or given) body. */
export function publish(
  base: string,
  topic: string,
  body: unknown,
  opts: { pubsub?: string; contentType?: string | null; query?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  const contentType = opts.contentType === undefined ? 'application/json' : opts.contentType;
  if (contentType !== null) headers['content-type'] = contentType;
  const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const query = opts.query ? `?${opts.query}` : '';
  return request(`${base}/v1.0/publish/${opts.pubsub ?? 'pubsub'}/${topic}${query}`, { method: 'POST', headers, body: text });
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The body parsed as JSON, or undefined. */
  json: unknown;
}

export interface AppReply {
  status?: number;
  body?: string;
  contentType?: string;
}

export type AppHandler = (req: ReceivedRequest) => AppReply | Promise<AppReply>;

/**
 * A subscriber app: answers GET /dapr/subscribe with `subscriptions` (or with `subscribeReply`)
 * and every other request with `handler` (default 200, empty body).
 */
export class TestApp {
  readonly received: ReceivedRequest[] = [];
  private readonly server: http.Server;
  private readonly sockets = new Set<net.Socket>();
  private waiters: Array<{ count: number; resolve: () => void }> = [];
  url = '';

  constructor(
    public subscriptions: unknown = [],
    public handler: AppHandler = () => ({ status: 200 }),
    public subscribeReply?: AppReply,
  ) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          json = undefined;
        }
        const received: ReceivedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json };
        const reply = (r: AppReply): void => {
          const headers: Record<string, string> = {};
          if (r.contentType) headers['content-type'] = r.contentType;
          res.writeHead(r.status ?? 200, headers);
          res.end(r.body ?? '');
        };
        if (received.method === 'GET' && received.path === '/dapr/subscribe') {
          this.discoveryRequests.push(received);
          reply(this.subscribeReply ?? { status: 200, body: JSON.stringify(this.subscriptions), contentType: 'application/json' });
          return;
        }
        this.received.push(received);
        this.wake();
        Promise.resolve(this.handler(received)).then(reply, () => reply({ status: 500 }));
      });
    });
    this.server.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  readonly discoveryRequests: ReceivedRequest[] = [];

  static async start(subscriptions: unknown = [], handler?: AppHandler, subscribeReply?: AppReply): Promise<TestApp> {
    const app = new TestApp(subscriptions, handler, subscribeReply);
    await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
    app.url = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
    return app;
  }

  /** Resolves once at least `count` deliveries (non-discovery requests) arrived. */
  waitFor(count: number): Promise<void> {
    if (this.received.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (this.received.length < w.count) return true;
      w.resolve();
      return false;
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }
}

/** A subscription item for GET /dapr/subscribe. */
export function sub(topic: string, route: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { pubsubname: 'pubsub', topic, route, ...extra };
}

/** Starts an emulator and (optionally) an app attached to it; `close()` stops both. */
export async function setup(
  opts: { emulator?: DaprEmulatorOptions; subscriptions?: unknown; handler?: AppHandler; appId?: string } = {},
): Promise<{ emu: DaprEmulator; app: TestApp; close: () => Promise<void> }> {
  const emu = await DaprEmulator.start(opts.emulator);
  const app = await TestApp.start(opts.subscriptions ?? [], opts.handler);
  try {
    if (opts.subscriptions !== undefined) await emu.attachApp({ appId: opts.appId ?? 'subscriber', appUrl: app.url });
  } catch (err) {
    await emu.stop();
    await app.close();
    throw err;
  }
  return {
    emu,
    app,
    close: async () => {
      await emu.stop();
      await app.close();
    },
  };
}

/** Waits until `predicate` holds, checking every millisecond. */
export async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Parses a JSON body, keeping key order (for wire-order assertions use `keysOf`). */
export function keysOf(jsonText: string): string[] {
  return Object.keys(JSON.parse(jsonText) as Record<string, unknown>);
}
