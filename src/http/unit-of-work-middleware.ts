import type { NextFunction, Request, RequestHandler, Response, ErrorRequestHandler } from 'express';
import { OutboxConfigError } from '../errors';
import type { OutboxEventMap } from '../core/events';
import { errorMessage, type Logger } from '../core/logger';
import { currentUnitOfWork, type UnitOfWork } from '../core/unit-of-work';

/** Options of `outbox.middleware()`. */
export interface UnitOfWorkMiddlewareOptions {
  /** HTTP methods that get a unit of work. Default ['POST', 'PUT', 'PATCH', 'DELETE']. */
  methods?: string[];
  /** A response status at or above this rolls the unit of work back. Default 500. */
  rollbackOnStatus?: number;
  /**
   * Answers a request whose commit failed (only while nothing was sent yet). Default: 500 with
   * `{"error":"UnitOfWorkError","message":"..."}`.
   */
  onCommitError?: (err: Error, req: Request, res: Response) => void;
}

interface Opener {
  beginUnitOfWork(trace?: { traceparent?: string; tracestate?: string }): Promise<UnitOfWork>;
  readonly logger: Logger;
  emit?(name: 'afterAnswer', event: OutboxEventMap['afterAnswer'][0]): boolean;
}

const DEFAULT_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];

/** The held response of each request under the middleware. */
const heldResponses = new WeakMap<Response, HeldResponse>();

/**
 * A unit of work per request: a transaction that model calls in the handler join on their own
 * (it begins at their first query), and the events `bus.publish()` buffers.
 *
 * The unit of work completes when the handler starts its answer: at `res.end()` (`res.json()`,
 * `res.send()`) or at the first `res.write()` of a streamed answer. COMMIT runs first, and the
 * answer goes out only once it succeeded; a failed commit answers 5xx instead of the handler's
 * success. An answer with a status >= `rollbackOnStatus`, or an error seen by
 * `outbox.errorHandler()` before the answer, rolls back.
 *
 * Once the handler has answered, the answer stands: an error after it (a throw after
 * `res.json()`, a second `res.json()`) is logged and changes neither the response nor the
 * outcome of the unit of work.
 */
export function unitOfWorkMiddleware(outbox: Opener, options: UnitOfWorkMiddlewareOptions = {}): RequestHandler {
  const methods = new Set((options.methods ?? DEFAULT_METHODS).map((m) => m.toUpperCase()));
  if (options.methods !== undefined && (!Array.isArray(options.methods) || options.methods.some((m) => typeof m !== 'string'))) {
    throw new OutboxConfigError('methods', options.methods, 'must be an array of HTTP method names');
  }
  const rollbackOnStatus = options.rollbackOnStatus ?? 500;
  if (!Number.isInteger(rollbackOnStatus) || rollbackOnStatus < 100 || rollbackOnStatus > 600) {
    throw new OutboxConfigError('rollbackOnStatus', options.rollbackOnStatus, 'must be an HTTP status between 100 and 600');
  }
  const settings: HoldSettings = {
    rollbackOnStatus,
    onCommitError: options.onCommitError ?? defaultCommitError,
    logger: outbox.logger,
    afterAnswer: (event) => void outbox.emit?.('afterAnswer', event),
  };

  return function unitOfWork(req: Request, res: Response, next: NextFunction): void {
    if (!methods.has(req.method)) return next();
    // Mounted twice, or on a router inside an app that has it too: the request has its unit of work.
    if (currentUnitOfWork()?.isOpen) return next();
    const traceparent = header(req, 'traceparent');
    const tracestate = header(req, 'tracestate');
    outbox.beginUnitOfWork({ traceparent, tracestate }).then(
      (uow) => {
        heldResponses.set(res, new HeldResponse(uow, req, res, settings));
        uow.run(() => next());
      },
      (err: unknown) => next(err),
    );
  };
}

/**
 * An error middleware that marks the request's unit of work rollback-only and passes the error
 * on. Put it before your own error handlers when they answer errors with statuses below
 * `rollbackOnStatus`. An error that comes after the handler answered changes nothing (the
 * answer stands) and is only passed on.
 */
export function unitOfWorkErrorHandler(): ErrorRequestHandler {
  return function markRollback(err: unknown, _req: Request, res: Response, next: NextFunction): void {
    const held = heldResponses.get(res);
    if (!held?.answered) currentUnitOfWork()?.markRollbackOnly(err);
    next(err);
  };
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

function defaultCommitError(_err: Error, _req: Request, res: Response): void {
  res.status(500).json({ error: 'UnitOfWorkError', message: 'the request could not be committed' });
}

interface HoldSettings {
  rollbackOnStatus: number;
  onCommitError: NonNullable<UnitOfWorkMiddlewareOptions['onCommitError']>;
  logger: Logger;
  afterAnswer: (event: OutboxEventMap['afterAnswer'][0]) => void;
}

type Write = (...args: unknown[]) => boolean;
type End = (...args: unknown[]) => Response;

/**
 * Holds a response until its unit of work has completed.
 *
 * The first `write()`, `end()` or `flushHeaders()` completes the unit of work (commit, or rollback
 * for an error status); the held calls are then replayed in order and the response's own methods
 * put back, so a streamed answer keeps its backpressure: while the commit runs, `write()` answers
 * false and 'drain' follows the replay. Headers are not sent before the commit, so a failed commit
 * can still answer 500.
 *
 * After `end()` the response counts as answered (`res.headersSent` is true, as in plain Express).
 * Express's error handler then closes the socket instead of answering again; that close is put off
 * until the held answer has been written, so the client gets the answer the handler gave.
 */
class HeldResponse {
  answered = false;
  private readonly write: Write;
  private readonly end: End;
  private readonly flushHeaders: () => void;
  private readonly held: Array<() => unknown> = [];
  private completion: Promise<boolean> | null = null;
  private answer: { status: number; message: string; headers: Record<string, number | string | string[] | undefined> } | undefined;
  private lastWrite = true;
  private releaseSocket: (() => void) | undefined;
  private lateCalls = 0;
  /** The held answer has been handed to the socket. */
  private ended = false;

  constructor(
    private readonly uow: UnitOfWork,
    private readonly req: Request,
    private readonly res: Response,
    private readonly settings: HoldSettings,
  ) {
    this.write = res.write as unknown as Write;
    this.end = res.end as unknown as End;
    this.flushHeaders = res.flushHeaders;
    res.write = ((...args: unknown[]): boolean => {
      if (this.answered) return this.late('write');
      this.hold(() => (this.lastWrite = this.write.apply(res, args)));
      return false;
    }) as Response['write'];
    res.end = ((...args: unknown[]): Response => {
      if (this.answered) {
        this.late('end');
        return res;
      }
      this.answered = true;
      this.answer = { status: res.statusCode, message: res.statusMessage, headers: res.getHeaders() };
      Object.defineProperty(res, 'headersSent', { configurable: true, get: () => true });
      this.holdSocket();
      this.hold(() => {
        this.restoreAnswer();
        this.restore();
        this.end.apply(res, args);
        this.ended = true;
      });
      return res;
    }) as Response['end'];
    res.flushHeaders = (): void => {
      if (!this.answered) this.hold(() => this.flushHeaders.call(res));
    };
    // A client that goes away before the handler answered: nothing will commit this work.
    res.once('close', () => {
      if (!this.completion && uow.isOpen) void uow.rollback();
    });
  }

  /** Queues a call until the unit of work has completed, starting the completion on the first. */
  private hold(call: () => unknown): void {
    this.held.push(call);
    if (this.completion) return;
    this.completion = this.complete();
    this.completion.then(
      (ok) => this.replay(ok),
      (err: unknown) => {
        // Only a throwing onCommitError gets here; the connection is all that is left to close.
        this.settings.logger.error('could not answer a failed commit', { method: this.req.method, url: this.req.originalUrl, error: errorMessage(err) });
        this.res.destroy();
      },
    );
  }

  private replay(ok: boolean): void {
    if (!ok) return;
    const calls = this.held.splice(0);
    for (const call of calls) call();
    if (!this.answered && this.held.length === 0) {
      this.restore();
      // Writers waiting for 'drain' after our `false` go on now, unless the socket is full.
      if (this.lastWrite) this.res.emit('drain');
    }
  }

  private async complete(): Promise<boolean> {
    const { uow, res, req, settings } = this;
    // Another part of the app (the subscription router) completed it already.
    if (!uow.isOpen) return true;
    if (res.statusCode >= settings.rollbackOnStatus || uow.rollbackOnly) {
      await uow.rollback();
      return true;
    }
    try {
      await uow.commit();
      return true;
    } catch (err) {
      settings.logger.error('unit of work failed; answering with an error', { method: req.method, url: req.originalUrl, error: errorMessage(err) });
      this.held.length = 0;
      this.answered = false;
      delete (res as { headersSent?: boolean }).headersSent;
      this.restore();
      if (!res.headersSent) {
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        settings.onCommitError(err as Error, req, res);
      } else {
        res.destroy(err as Error);
      }
      this.letSocketGo();
      return false;
    }
  }

  /**
   * Puts back the status and headers of the answer, should anything have changed them since.
   * When a held write, `writeHead()` or `flushHeaders()` before the end sent them already, they
   * are what the client got, and stand as they are.
   */
  private restoreAnswer(): void {
    const { res, answer } = this;
    if (!answer) return;
    delete (res as { headersSent?: boolean }).headersSent;
    if (res.headersSent) return;
    res.statusCode = answer.status;
    res.statusMessage = answer.message;
    for (const name of res.getHeaderNames()) if (!(name in answer.headers)) res.removeHeader(name);
    for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined) res.setHeader(name, value);
  }

  private restore(): void {
    const { res } = this;
    res.write = this.write as unknown as Response['write'];
    res.end = this.end as unknown as Response['end'];
    res.flushHeaders = this.flushHeaders;
  }

  /** A write or end after the answer: ignored, like the 500 Express would try to write for a late error. */
  private late(what: 'write' | 'end'): false {
    this.settings.afterAnswer({ method: this.req.method, url: this.req.originalUrl, what });
    if (this.lateCalls++ === 0) {
      this.settings.logger.warn(`the response was already answered; a later ${what}() was ignored (the answer stands)`, {
        method: this.req.method,
        url: this.req.originalUrl,
      });
    }
    return false;
  }

  /**
   * Express's error handler destroys the socket for an error that comes after the headers were
   * sent. Until the held answer has been written, that destroy waits; then it closes the
   * connection as it would have in plain Express.
   */
  private holdSocket(): void {
    const socket = this.req.socket;
    if (!socket) return;
    const destroy = socket.destroy;
    let wanted: unknown[] | undefined;
    const { settings, req, res } = this;
    const ended = () => this.ended;
    socket.destroy = function heldDestroy(this: typeof socket, ...args: unknown[]) {
      // Once the answer is out, a destroy is the socket's own business (or plain Express's).
      if (ended() && !wanted) return destroy.apply(this, args as []);
      if (!wanted) {
        wanted = args;
        settings.logger.warn('an error came after the response was answered; the answer stands', { method: req.method, url: req.originalUrl });
        settings.afterAnswer({ method: req.method, url: req.originalUrl, what: 'error' });
      }
      return this;
    } as typeof socket.destroy;
    this.releaseSocket = () => {
      socket.destroy = destroy;
      if (wanted) destroy.apply(socket, wanted as []);
    };
    const release = () => this.letSocketGo();
    res.once('finish', release);
    res.once('close', release);
  }

  private letSocketGo(): void {
    const release = this.releaseSocket;
    this.releaseSocket = undefined;
    release?.();
  }
}
