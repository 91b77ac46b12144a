import type { NextFunction, Request, RequestHandler, Response, ErrorRequestHandler } from 'express';
import { OutboxConfigError } from '../errors';
import type { Logger } from '../core/logger';
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
}

const DEFAULT_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * A unit of work per request: a transaction that model calls in the handler join on their own,
 * and the events `bus.publish()` buffers. The response is held until COMMIT has succeeded; a
 * failed commit answers 5xx instead of the handler's success. A thrown error or `next(err)` that
 * ends in a status >= `rollbackOnStatus`, or one seen by `outbox.errorHandler()`, rolls back.
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
  const onCommitError = options.onCommitError ?? defaultCommitError;

  return function unitOfWork(req: Request, res: Response, next: NextFunction): void {
    if (!methods.has(req.method)) return next();
    const traceparent = header(req, 'traceparent');
    const tracestate = header(req, 'tracestate');
    outbox.beginUnitOfWork({ traceparent, tracestate }).then(
      (uow) => {
        holdResponseUntilComplete(uow, req, res, rollbackOnStatus, onCommitError, outbox.logger);
        uow.run(() => next());
      },
      (err: unknown) => next(err),
    );
  };
}

/**
 * An error middleware that marks the request's unit of work rollback-only and passes the error
 * on. Put it before your own error handlers when they answer errors with statuses below
 * `rollbackOnStatus`.
 */
export function unitOfWorkErrorHandler(): ErrorRequestHandler {
  return function markRollback(err: unknown, _req: Request, _res: Response, next: NextFunction): void {
    currentUnitOfWork()?.markRollbackOnly(err);
    next(err);
  };
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

function defaultCommitError(err: Error, _req: Request, res: Response): void {
  res.status(500).json({ error: 'UnitOfWorkError', message: 'the request could not be committed' });
}

/**
 * Replaces `res.write` and `res.end` for this response: the first call completes the unit of
 * work (commit, or rollback for an error status), then the calls are replayed in order. Headers
 * are not sent before that, so a failed commit can still answer 500.
 */
function holdResponseUntilComplete(
  uow: UnitOfWork,
  req: Request,
  res: Response,
  rollbackOnStatus: number,
  onCommitError: NonNullable<UnitOfWorkMiddlewareOptions['onCommitError']>,
  logger: Logger,
): void {
  const write = res.write;
  const end = res.end;
  let completion: Promise<boolean> | null = null;

  const restore = () => {
    res.write = write;
    res.end = end;
  };

  const complete = (): Promise<boolean> => {
    if (!completion) {
      completion = (async () => {
        if (res.statusCode >= rollbackOnStatus || uow.rollbackOnly) {
          await uow.rollback();
          return true;
        }
        try {
          await uow.commit();
          return true;
        } catch (err) {
          logger.error('unit of work failed; answering with an error', { method: req.method, url: req.originalUrl, error: (err as Error).message });
          restore();
          if (!res.headersSent) {
            for (const name of res.getHeaderNames()) res.removeHeader(name);
            onCommitError(err as Error, req, res);
          } else {
            res.destroy(err as Error);
          }
          return false;
        }
      })();
    }
    return completion;
  };

  res.write = function holdWrite(this: Response, ...args: unknown[]): boolean {
    complete().then((ok) => ok && (write as (...a: unknown[]) => boolean).apply(res, args));
    return true;
  } as Response['write'];

  res.end = function holdEnd(this: Response, ...args: unknown[]): Response {
    complete().then((ok) => {
      if (!ok) return;
      restore();
      (end as (...a: unknown[]) => Response).apply(res, args);
    });
    return res;
  } as Response['end'];

  // A client that goes away before the handler answered: nothing will commit this work.
  res.once('close', () => {
    if (!completion && uow.isOpen) void uow.rollback();
  });
}
