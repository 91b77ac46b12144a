/**
 * The admin API and its dashboard page, on an express Router the application mounts under a
 * path of its choice (`app.use('/admin', createAdminRouter(...))`). Closed by default: without an
 * `authorize` hook every route answers 401.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { OutboxConfigError } from '../../errors';
import { consoleLogger, errorMessage, type Logger } from '../../core/logger';
import type { TransactionPort } from '../../ports/transactions';
import { commitRequestUnitOfWork } from '../router/commit-request-unit-of-work';
import type { InboxStore } from '../../ports/inbox-store';
import type { OutboxOverview, OutboxStore, RepublishFilter } from '../../ports/outbox-store';
import type { DaprSubscription } from '../router/types';
import { readRequestBody } from '../router/request-body';
import { sendJson } from '../router/statuses';
import { answerError, crossSiteReason, CSRF_HEADER, setSecurityHeaders } from './admin-guards';
import { AdminInputError, readEventId, readEventPageQuery, readInboxPageQuery, readQuery, readTargetBody } from './admin-input';
import { dashboardFiles } from './static-files';

/** The parts of an Outbox the admin router uses (an `Outbox` from createOutbox() has them all). */
export interface AdminOutbox {
  readonly store: OutboxStore;
  readonly inbox: InboxStore | undefined;
  readonly logger?: Logger;
  /** Its transactions: a mutation runs outside the request's unit of work (see mutate below). */
  readonly transactions?: TransactionPort;
  overview(): Promise<OutboxOverview>;
  republish(target: RepublishFilter): Promise<number>;
}

/**
 * Decides whether a request may use the admin: resolve true to let it through. Resolve false
 * (or throw) to answer 401; set headers on `res` first (`WWW-Authenticate`) if you want them
 * sent, or answer yourself (a redirect to your login page) and the router sends nothing more.
 */
export type AdminAuthorize = (req: Request, res: Response) => boolean | Promise<boolean>;

export interface AdminRouterOptions {
  /** The service's outbox. Required. */
  outbox: AdminOutbox;
  /** The access check. Required in practice: without it every route answers 401. */
  authorize?: AdminAuthorize;
  /** Refuse every mutation (republish, delete) with 405; the page hides its buttons. Default false. */
  readOnly?: boolean;
  /** What `GET subscriptions` lists: the service's subscription routers. Default: none. */
  subscriptions?: { subscriptions(): DaprSubscription[] } | ReadonlyArray<{ subscriptions(): DaprSubscription[] }>;
}

/** Largest JSON body of a mutation, bytes (a thousand ids fit easily). */
const MAX_BODY_BYTES = 128 * 1024;

type Handler = (req: Request, res: Response) => Promise<void> | void;

/**
 * Creates the admin router: the dashboard at its root, and the JSON API beside it.
 *
 * ```ts
 * app.use('/admin', createAdminRouter({
 *   outbox,
 *   authorize: (req) => req.session?.user?.isAdmin === true,   // your own check
 *   readOnly: process.env.NODE_ENV === 'production',
 *   subscriptions: router,
 * }));
 * ```
 *
 * Routes (relative to where it is mounted): `GET /` (the page), `GET stats`, `GET events`,
 * `GET events/:id`, `POST events/republish`, `POST events/delete`, `GET inbox`,
 * `GET subscriptions`. Mutations need a same-origin `application/json` request with the
 * `X-Outbox-Csrf` header (403 otherwise); a bad input is answered 400 naming the field.
 */
export function createAdminRouter(options: AdminRouterOptions): Router {
  if (!options || typeof options !== 'object') throw new OutboxConfigError('options', options, 'must be an object');
  const { outbox, authorize } = options;
  if (!outbox || typeof outbox !== 'object' || typeof outbox.overview !== 'function' || typeof outbox.republish !== 'function' || !outbox.store) {
    throw new OutboxConfigError('outbox', outbox === null ? null : typeof outbox, 'must be an Outbox (from createOutbox())');
  }
  if (authorize !== undefined && typeof authorize !== 'function') throw new OutboxConfigError('authorize', typeof authorize, 'must be a function (req, res) => boolean');
  if (options.readOnly !== undefined && typeof options.readOnly !== 'boolean') throw new OutboxConfigError('readOnly', options.readOnly, 'must be a boolean');
  const readOnly = options.readOnly ?? false;
  const subscriptionSources = options.subscriptions === undefined ? [] : Array.isArray(options.subscriptions) ? options.subscriptions : [options.subscriptions];
  for (const s of subscriptionSources) {
    if (!s || typeof (s as { subscriptions?: unknown }).subscriptions !== 'function') throw new OutboxConfigError('subscriptions', typeof s, 'must be a subscription router (or an array of them)');
  }
  const files = dashboardFiles();
  const store = outbox.store;
  const logger = outbox.logger;

  const router = express.Router();

  // Every request: the security headers, then the authorize hook. Nothing is served before it.
  router.use(async function adminAccess(req: Request, res: Response, next: NextFunction) {
    setSecurityHeaders(res);
    if (!authorize) return answerError(res, 401, 'UNAUTHORIZED', 'the admin API has no authorize hook: every request is refused');
    let allowed = false;
    try {
      allowed = (await authorize(req, res)) === true;
    } catch (err) {
      logger?.warn(`admin authorize hook threw: ${errorMessage(err)}`);
    }
    if (res.headersSent || res.writableEnded) return;
    if (!allowed) return answerError(res, 401, 'UNAUTHORIZED', 'not authorized');
    next();
  });

  const page = (name: string) => (req: Request, res: Response) => {
    const file = files.get(name)!;
    // The page's links are relative: at `/admin` (no slash) they would resolve against `/`.
    if (name === 'index.html' && !pathOf(req.originalUrl).endsWith('/')) return void res.redirect(308, `${pathOf(req.originalUrl)}/${queryOf(req.originalUrl)}`);
    res.statusCode = 200;
    res.setHeader('Content-Type', file.type);
    res.setHeader('Content-Length', file.body.length);
    res.end(req.method === 'HEAD' ? undefined : file.body);
  };
  const read = (path: string, handler: Handler) => {
    router.get(path, wrap(handler));
    router.all(path, (_req, res) => methodNotAllowed(res, 'GET, HEAD'));
  };
  const mutate = (path: string, handler: (req: Request, res: Response, body: unknown) => Promise<void>) => {
    router.all(path, async (req, res) => {
      if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
      if (readOnly) return answerError(res, 405, 'READ_ONLY', 'the admin API is read-only', {});
      const refused = crossSiteReason(req);
      if (refused) return answerError(res, 403, 'FORBIDDEN', refused);
      const body = await readJson(req);
      if (!body.ok) return answerError(res, body.status, body.status === 413 ? 'TOO_LARGE' : 'BAD_REQUEST', body.message, body.status === 400 ? { field: 'body' } : {});
      // Mounted after outbox.middleware(), a POST arrives in a request unit of work; on SQLite its
      // transaction holds the only writer slot the republish or delete needs, so it is completed first.
      const isolation = await commitRequestUnitOfWork(outbox.transactions, logger ?? consoleLogger);
      if (!isolation.ok) return answerError(res, 503, 'UNAVAILABLE', 'the request could not start: try again');
      await isolation.run(() => wrap((rq, rs) => handler(rq, rs, body.value))(req, res));
    });
  };
  const wrap = (handler: Handler) => async (req: Request, res: Response) => {
    try {
      await handler(req, res);
    } catch (err) {
      if (err instanceof AdminInputError) return answerError(res, 400, 'BAD_REQUEST', err.message, { field: err.field });
      logger?.error(`admin API failed: ${errorMessage(err)}`, { path: req.path });
      answerError(res, 500, 'INTERNAL', 'the admin API failed; see the service log');
    }
  };

  router.get('/', page('index.html'));
  router.get('/dashboard.js', page('dashboard.js'));
  router.get('/dashboard.css', page('dashboard.css'));

  read('/stats', async (req, res) => {
    readQuery(req.originalUrl, []);
    sendJson(res, 200, { ...(await outbox.overview()), readOnly, csrfHeader: CSRF_HEADER });
  });

  read('/events', async (req, res) => {
    const query = readEventPageQuery(req.originalUrl);
    if (!store.page) return answerError(res, 501, 'NOT_IMPLEMENTED', 'this outbox store cannot list events');
    const page = await store.page(query);
    sendJson(res, 200, { events: page.rows, next: page.next === null ? null : String(page.next) });
  });

  mutate('/events/republish', async (_req, res, body) => {
    const target = readTargetBody(body);
    sendJson(res, 200, { republished: await outbox.republish(target) });
  });

  mutate('/events/delete', async (_req, res, body) => {
    const target = readTargetBody(body);
    if (!store.deleteTerminalFailed) return answerError(res, 501, 'NOT_IMPLEMENTED', 'this outbox store cannot delete failed events');
    sendJson(res, 200, { deleted: await store.deleteTerminalFailed(target) });
  });

  read('/events/:id', async (req, res) => {
    readQuery(req.originalUrl, []);
    const id = readEventId(req.params.id);
    const [row] = await store.find([id]);
    if (!row) return answerError(res, 404, 'NOT_FOUND', `no event ${id}`);
    sendJson(res, 200, { event: { ...row, terminal: row.state === 3 && row.nextAttemptTime === null, data: decode(row.content) } });
  });

  read('/inbox', async (req, res) => {
    const query = readInboxPageQuery(req.originalUrl);
    const inbox = outbox.inbox;
    if (!inbox?.page) return answerError(res, 501, 'NOT_IMPLEMENTED', 'this outbox has no inbox that can list entries');
    sendJson(res, 200, await inbox.page(query));
  });

  read('/subscriptions', (req, res) => {
    readQuery(req.originalUrl, []);
    sendJson(res, 200, { subscriptions: subscriptionSources.flatMap((s) => s.subscriptions()) });
  });

  router.use((_req: Request, res: Response) => answerError(res, 404, 'NOT_FOUND', 'no such admin route'));
  return router;
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('Allow', allow);
  answerError(res, 405, 'METHOD_NOT_ALLOWED', `use ${allow}`);
}

type JsonBody = { ok: true; value: unknown } | { ok: false; status: number; message: string };

async function readJson(req: IncomingMessage): Promise<JsonBody> {
  const body = await readRequestBody(req, MAX_BODY_BYTES);
  if (body.kind === 'too-large') return { ok: false, status: 413, message: `the body must be at most ${body.limit} bytes` };
  if (body.kind === 'unreadable') return { ok: false, status: 400, message: body.reason };
  if (body.kind === 'parsed') return { ok: true, value: body.value };
  try {
    return { ok: true, value: JSON.parse(body.bytes.toString('utf8')) };
  } catch {
    return { ok: false, status: 400, message: 'the body is not valid JSON' };
  }
}

/** The content as the subscriber will see it: parsed JSON, or null when it is not JSON. */
function decode(content: string): unknown {
  try {
    return JSON.parse(content);
  } catch {
    return null;
  }
}

function pathOf(url: string): string {
  const at = url.indexOf('?');
  return at < 0 ? url : url.slice(0, at);
}

function queryOf(url: string): string {
  const at = url.indexOf('?');
  return at < 0 ? '' : url.slice(at);
}
