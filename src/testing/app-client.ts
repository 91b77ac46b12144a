/**
 * The sidecar -> app HTTP channel: one keep-alive agent per emulator (as daprd keeps its app
 * connections open), whose sockets closeConnections() and stop() can destroy.
 */
import http from 'node:http';

export interface AppRequest {
  method: 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface AppAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export class AppClient {
  private agent = new http.Agent({ keepAlive: true });
  private readonly open = new Set<http.ClientRequest>();

  constructor(private readonly timeoutMs: number) {}

  /** Sends one request. Rejects on a connection error, a timeout or when the client is closed. */
  request(req: AppRequest): Promise<AppAnswer> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...req.headers };
      if (req.body !== undefined) headers['content-length'] = String(req.body.length);
      const clientReq = http.request(req.url, { method: req.method, headers, agent: this.agent });
      this.open.add(clientReq);
      const finish = (): void => {
        this.open.delete(clientReq);
      };
      if (this.timeoutMs > 0) {
        clientReq.setTimeout(this.timeoutMs, () => clientReq.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      }
      clientReq.on('error', (err) => {
        finish();
        reject(err);
      });
      clientReq.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (err) => {
          finish();
          reject(err);
        });
        let ended = false;
        res.on('end', () => {
          ended = true;
          finish();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        // A socket destroyed mid-answer closes the response without 'end'.
        res.on('close', () => {
          if (ended) return;
          finish();
          reject(new Error('the connection closed before the app finished answering'));
        });
      });
      clientReq.end(req.body);
    });
  }

  /** Destroys every socket to the apps, idle or busy; requests on busy ones fail. */
  destroySockets(): void {
    for (const req of this.open) req.destroy(new Error('connection closed by the emulator'));
    this.agent.destroy();
    this.agent = new http.Agent({ keepAlive: true });
  }

  close(): void {
    for (const req of this.open) req.destroy(new Error('emulator stopped'));
    this.open.clear();
    this.agent.destroy();
  }
}

/** Joins an app's base URL and a route the way daprd's app channel does: `<base>/<route without leading slashes>`. */
export function appEndpoint(appUrl: string, route: string): URL {
  const base = appUrl.replace(/\/+$/, '');
  return new URL(`${base}/${route.replace(/^\/+/, '')}`);
}
