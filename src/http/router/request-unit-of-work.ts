/**
 * When the app installed `outbox.middleware()` before the router, a delivery (a POST) arrives
 * inside a request unit of work holding an open transaction; on SQLite it holds the only writer
 * slot, so a transaction of the router's own would wait forever. The router therefore completes
 * that unit of work first (committing whatever earlier middleware wrote in it) and marks it so
 * that the middleware's own completion, when the answer is sent, does nothing. The deliveries
 * then run outside it, each in a transaction of its own, with the ambient transaction cleared.
 */
import type { Sequelize } from 'sequelize';
import { currentUnitOfWork } from '../../core/unit-of-work';
import { errorMessage, type Logger } from '../../core/logger';
import { runWithTransaction } from '../../adapters/sequelize/transaction-context';

export type Isolation = { ok: true; run: <T>(fn: () => T) => T } | { ok: false; reason: string };

const direct = <T>(fn: () => T): T => fn();

export async function leaveRequestUnitOfWork(logger: Logger): Promise<Isolation> {
  const uow = currentUnitOfWork();
  if (!uow || !uow.isOpen) return { ok: true, run: direct };
  const sequelize = (uow.transaction as { sequelize?: Sequelize } | undefined)?.sequelize;
  try {
    await uow.commit();
  } catch (err) {
    logger.error(`the request's unit of work could not be committed before the delivery; answering RETRY: ${errorMessage(err)}`);
    return { ok: false, reason: errorMessage(err) };
  } finally {
    // The unit of work is finished either way; this turns the middleware's completion into a no-op.
    uow.markRollbackOnly(new Error('completed by the subscription router'));
  }
  if (!sequelize) return { ok: true, run: direct };
  return { ok: true, run: (fn) => runWithTransaction(sequelize, null, fn) };
}
