import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { resolveHealthOptions, type HealthOptions, type OutboxHealth } from '../core/health';

interface HealthSource {
  health(options?: HealthOptions): Promise<OutboxHealth>;
}

/**
 * An express handler for readiness and liveness probes: 200 with the report when the outbox is
 * healthy, 503 with the report (its `reasons` say why) when not. The options are checked when the
 * handler is built.
 *
 * ```ts
 * app.get('/health', outbox.healthHandler({ maxPendingAge: 300 }));
 * ```
 */
export function healthHandler(outbox: HealthSource, options: HealthOptions = {}): RequestHandler {
  resolveHealthOptions(options);
  return function health(_req: Request, res: Response, next: NextFunction): void {
    outbox.health(options).then((report) => {
      res.setHeader('Cache-Control', 'no-store');
      res.status(report.healthy ? 200 : 503).json({ status: report.healthy ? 'ok' : 'unhealthy', ...report });
    }, next);
  };
}
