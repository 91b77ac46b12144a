/**
 * When the app installed `outbox.middleware()` before the router, a delivery (a POST) arrives
 * inside a request unit of work. The deliveries must not run in it: each has a transaction of its
 * own with its inbox record, and on SQLite the request's transaction, once begun, holds the only
 * writer slot, so a delivery's transaction would wait for it. The router therefore commits the
 * request's unit of work first (whatever earlier middleware wrote in it), and runs the deliveries
 * outside it; the middleware then finds it completed and has nothing left to do.
 */
import { currentUnitOfWork, outsideUnitOfWork } from '../../core/unit-of-work';
import { errorMessage, type Logger } from '../../core/logger';
import type { TransactionPort } from '../../ports/transactions';

export type Isolation = { ok: true; run: <T>(fn: () => T) => T } | { ok: false; reason: string };

const direct: Isolation = { ok: true, run: <T>(fn: () => T): T => fn() };

export async function commitRequestUnitOfWork(transactions: TransactionPort | undefined, logger: Logger): Promise<Isolation> {
  const uow = currentUnitOfWork();
  if (!uow) return direct;
  if (uow.isOpen) {
    try {
      await uow.commit();
    } catch (err) {
      logger.error(`the request's unit of work could not be committed before the delivery; answering RETRY: ${errorMessage(err)}`);
      return { ok: false, reason: errorMessage(err) };
    }
  }
  if (!transactions) return direct;
  return { ok: true, run: (fn) => outsideUnitOfWork(transactions, fn) };
}
