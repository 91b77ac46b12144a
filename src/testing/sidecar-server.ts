/**
 * One sidecar: an HTTP server with daprd's pubsub-related API for one app id. Several sidecars
 * share one broker (held by the EmulatorState), which is how services in different processes reach each
 * other through a single emulator.
 */
import http from 'node:http';
import net from 'node:net';
import { AdminApi, handleAdmin } from './admin-routes';
import { handleBulkPublish } from './bulk-publish-handler';
import type { EmulatorState } from './emulator-state';
import { healthErrors } from './dapr-errors';
import { traceContextOf } from './envelope';
import { EmulatorError, messageOf } from './errors';
import { goQuote } from './go-json';
import { answers, HttpAnswer, readBody, writeAnswer } from './http-answer';
import { metadataBody } from './metadata-endpoint';
import { handlePublish } from './publish-handler';
import { routingPath, queryUnescape } from './request-path';
import { metadataFromQuery } from './request-metadata';

export class SidecarServer {
  private readonly server: http.Server;
  private readonly sockets = new Set<net.Socket>();
  private boundPort = 0;

  constructor(
    private readonly core: EmulatorState,
    private readonly admin: AdminApi,
    readonly appId: string,
    private readonly apiToken: string | undefined,
  ) {
    this.server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
    this.server.on('connection', (socket: net.Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get port(): number {
    return this.boundPort;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(new EmulatorError('LISTEN_FAILED', `sidecar ${this.appId} could not listen on ${host}:${port}: ${err.message}`, {
          details: { appId: this.appId, host, port },
          cause: err,
        }));
      };
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.boundPort = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** Destroys every client connection, idle keep-alive ones included. */
  destroySockets(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        this.destroySockets();
        resolve();
        return;
      }
      this.server.close(() => resolve());
      this.destroySockets();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const rawPath = req.url ?? '/';
    let answer: HttpAnswer;
    try {
      answer = await this.route(req, method);
    } catch (err) {
      this.core.options.logger.warn(`sidecar ${this.appId}: ${method} ${rawPath} failed: ${messageOf(err)}`);
      answer = answers.plainError(500, `emulator error: ${messageOf(err)}`);
    }
    this.core.recorder.requests.push({ appId: this.appId, method, path: rawPath, status: answer.status, at: this.core.now() });
    this.core.recorder.trim();
    writeAnswer(res, answer);
  }

  private async route(req: http.IncomingMessage, method: string): Promise<HttpAnswer> {
    const routed = routingPath(req.url ?? '/');
    if (!routed.ok) {
      // Go's net/http refuses the request line itself, before any handler (and the token check).
      await drain(req);
      return { status: 400, headers: { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }, body: Buffer.from('400 Bad Request') };
    }
    const url = new URL(req.url ?? '/', 'http://sidecar');
    const trimmed = url.pathname.replace(/^\/+|\/+$/g, '');
    const isHealth = trimmed === 'v1.0/healthz' || trimmed === 'v1.0/healthz/outbound';
    if (this.apiToken !== undefined && req.headers['dapr-api-token'] !== this.apiToken && !(method === 'GET' && isHealth)) {
      await drain(req);
      return answers.plainError(401, 'invalid api token');
    }
    const segments = url.pathname.split('/').slice(1).map(decodeSegment);
    const [version, group] = segments;

    if (version === 'v1.0' && group === 'healthz' && isHealth) {
      if (method !== 'GET') return methodNotAllowed(req);
      if (trimmed === 'v1.0/healthz') {
        return this.core.faults.ready ? answers.empty() : answers.apiError(healthErrors.notReady());
      }
      return this.core.faults.outboundReady ? answers.empty() : answers.apiError(healthErrors.outboundNotReady());
    }
    if (version === 'v1.0' && group === 'metadata' && trimmed === 'v1.0/metadata') {
      if (method !== 'GET') return methodNotAllowed(req);
      return answers.json(200, metadataBody(this.core, this.appId));
    }
    if ((version === 'v1.0' || version === 'v1.0-alpha1') && group === 'publish') {
      const bulk = segments[2] === 'bulk' && segments.length >= 4;
      if (!bulk && version === 'v1.0-alpha1') return notFound(req);
      if (method !== 'POST' && method !== 'PUT') return methodNotAllowed(req);
      // publish/{pubsubname}/* and publish/bulk/{pubsubname}/*, read from the path chi routes on.
      const rest = routed.value.split('/').slice(bulk ? 4 : 3);
      const pubsubName = queryUnescape(rest[0] ?? '');
      if (!pubsubName.ok) return unescapeFailed(req, 'pubsubname', pubsubName.error);
      const topic = queryUnescape(rest.slice(1).join('/'));
      if (!topic.ok) return unescapeFailed(req, '*', topic.error);
      return this.publish(req, url, bulk, pubsubName.value, topic.value);
    }
    if (version === 'emulator' && group === 'v1') {
      const body = await readBody(req);
      return handleAdmin(this.admin, method, segments.slice(2).filter((s) => s !== ''), body === 'too-large' ? Buffer.alloc(0) : body);
    }
    return notFound(req);
  }

  private async publish(req: http.IncomingMessage, url: URL, bulk: boolean, pubsubName: string, topic: string): Promise<HttpAnswer> {
    // A publish holds an in-flight token from the first byte until the broker took the message.
    const release = this.core.inFlight.enter();
    try {
      const body = await readBody(req);
      const rejection = this.core.faults.takeRequestRejection();
      if (rejection !== undefined) return answers.plainError(rejection, http.STATUS_CODES[rejection] ?? 'rejected');
      if (body === 'too-large') return answers.plainError(413, 'http: request body too large');
      const trace = traceContextOf(req.headers);
      const request = {
        pubsubName,
        topic,
        body,
        metadata: metadataFromQuery(url.searchParams),
        traceParent: trace.traceParent,
        traceState: trace.traceState,
      };
      const sidecar = { appId: this.appId };
      if (bulk) return await handleBulkPublish(this.core, sidecar, request);
      return await handlePublish(this.core, sidecar, { ...request, contentType: req.headers['content-type'] ?? '' });
    } finally {
      release();
    }
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

async function drain(req: http.IncomingMessage): Promise<void> {
  await readBody(req).catch(() => undefined);
}

/** daprd's answer when a route parameter does not unescape (its unescapeRequestParametersHandler). */
async function unescapeFailed(req: http.IncomingMessage, param: string, error: string): Promise<HttpAnswer> {
  await drain(req);
  return answers.plainError(400, `failed to unescape request parameter ${goQuote(param)}. Error: ${error}`);
}

async function notFound(req: http.IncomingMessage): Promise<HttpAnswer> {
  await drain(req);
  return answers.plainError(404, '404 page not found');
}

async function methodNotAllowed(req: http.IncomingMessage): Promise<HttpAnswer> {
  await drain(req);
  return { status: 405, headers: {}, body: Buffer.alloc(0) };
}
