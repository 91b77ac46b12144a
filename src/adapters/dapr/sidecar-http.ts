import { Agent, request } from 'node:http';

/** The sidecar's answer to one call: any status, with its body as text. */
export interface SidecarAnswer {
  status: number;
  text: string;
}

/** Where the sidecar listens and how to talk to it. */
export interface SidecarHttpOptions {
  host: string;
  port: number;
  /** Sent as `dapr-api-token` when set. */
  apiToken: string | undefined;
}

/** What a POST body is: JSON (the event itself, a bulk body) or a CloudEvent of the publisher's own. */
export type PostContentType = 'application/json' | 'application/cloudevents+json';

/** Sockets kept open to the sidecar: enough for the bus's concurrent publishes and bulk calls. */
const MAX_SOCKETS = 64;

/**
 * JSON POSTs to the sidecar over `node:http` with kept-alive sockets.
 *
 * The @dapr/dapr client (node-fetch) spends about 0.2 ms of CPU on a publish, this about 0.08 ms
 * (bench/RESULTS.md), and the body goes out as the stored text instead of being parsed and
 * serialised again.
 */
export class SidecarHttp {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  private readonly headers: Record<string, string>;
  private readonly cloudEventHeaders: Record<string, string>;

  constructor(private readonly options: SidecarHttpOptions) {
    this.headers = { 'Content-Type': 'application/json' };
    if (options.apiToken) this.headers['dapr-api-token'] = options.apiToken;
    this.cloudEventHeaders = { ...this.headers, 'Content-Type': 'application/cloudevents+json' };
  }

  /**
   * Resolves with whatever the sidecar answered; rejects on a connection error, or with
   * `timeoutError()` when no full answer came within `timeoutMs` (the request is then aborted, so
   * its socket is not reused).
   */
  post(path: string, body: string, timeoutMs: number, timeoutError: () => Error, contentType: PostContentType = 'application/json'): Promise<SidecarAnswer> {
    return this.send('POST', path, body, timeoutMs, timeoutError, contentType === 'application/json' ? this.headers : this.cloudEventHeaders);
  }

  /** A GET (the health routes), answered and timed out as `post()`. */
  get(path: string, timeoutMs: number, timeoutError: () => Error): Promise<SidecarAnswer> {
    return this.send('GET', path, '', timeoutMs, timeoutError, this.headers);
  }

  private send(method: 'GET' | 'POST', path: string, body: string, timeoutMs: number, timeoutError: () => Error, headers: Record<string, string>): Promise<SidecarAnswer> {
    return new Promise((resolve, reject) => {
      const req = request({
        agent: this.agent,
        host: this.options.host,
        port: this.options.port,
        method,
        path,
        headers: method === 'POST' ? { ...headers, 'Content-Length': Buffer.byteLength(body) } : headers,
      });
      const timer = setTimeout(() => {
        reject(timeoutError());
        req.destroy();
      }, timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      req.on('error', fail);
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text });
        });
      });
      req.end(method === 'POST' ? body : undefined);
    });
  }

  /** Closes the kept-alive sockets; calls still running fail with a connection error. */
  close(): void {
    this.agent.destroy();
  }
}
