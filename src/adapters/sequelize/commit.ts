import type { Sequelize, Transaction } from 'sequelize';
import { OutboxError } from '../../errors';
import { neverBegan } from './deferred-transaction';

type Listener = (msg?: { text?: string }) => void;

/** The parts of a node-postgres client this file reads; each may be missing in some version. */
interface PgClient {
  /** pg 8.21+: the status of the last ReadyForQuery, 'I' idle, 'T' in a transaction, 'E' aborted. */
  getTransactionStatus?: () => string | null;
  /** False while a statement is on the wire. */
  readyForQuery?: boolean;
  /** False once the connection failed or ended: nothing more will arrive on it. */
  _queryable?: boolean;
  /** The protocol connection of the JavaScript client, which emits each message by name. */
  connection?: { on(event: string, listener: Listener): unknown; off(event: string, listener: Listener): unknown };
}

const ABORTED =
  'PostgreSQL rolled the transaction back instead of committing it: a statement in it failed ' +
  '(and its error was caught), which aborts the whole transaction';

/**
 * Commits, and throws when PostgreSQL did not. Once a statement fails there, the transaction is
 * aborted and COMMIT answers with the command tag ROLLBACK instead of an error, so a handler that
 * catches a failed insert and returns would otherwise be reported as committed with nothing kept.
 *
 * The status the server sends with every answer tells before COMMIT, with no round trip: an
 * aborted transaction is rolled back instead, so Sequelize's afterCommit hooks (which dispatch
 * the events written in it) do not run. Drivers before pg 8.21 do not keep that status; with
 * them, COMMIT's own command tag tells, after the hooks ran.
 */
export async function commitTransaction(tx: Transaction): Promise<void> {
  // A deferred transaction that never began has nothing to commit (and asking for its connection would begin it).
  if (neverBegan(tx)) return tx.commit();
  const t = tx as unknown as { sequelize: Sequelize; connection?: PgClient };
  const client = t.sequelize.getDialect() === 'postgres' ? t.connection : undefined;
  if (!client) return tx.commit();
  await settled(client);
  if (client.getTransactionStatus?.() === 'E') {
    await tx.rollback();
    throw new OutboxError(ABORTED);
  }
  let tag: string | undefined;
  const onComplete: Listener = (msg) => (tag = msg?.text);
  client.connection?.on('commandComplete', onComplete);
  try {
    await tx.commit();
  } finally {
    client.connection?.off('commandComplete', onComplete);
  }
  if (tag === 'ROLLBACK') throw new OutboxError(ABORTED);
}

/**
 * Waits until the server has answered everything sent on the connection. pg hands a statement's
 * error to the caller as soon as the error arrives, and the status comes in the message after
 * it; a statement not awaited may still be running. COMMIT would wait for both anyway.
 */
async function settled(client: PgClient): Promise<void> {
  const protocol = client.connection;
  while (protocol && client.readyForQuery === false && client._queryable !== false) {
    const gone = await new Promise<boolean>((resolve) => {
      const done = (ended: boolean) => () => {
        protocol.off('readyForQuery', ready);
        protocol.off('end', end);
        resolve(ended);
      };
      const ready = done(false);
      const end = done(true);
      protocol.on('readyForQuery', ready);
      protocol.on('end', end);
    });
    // A lost connection fails the COMMIT on its own.
    if (gone) return;
  }
}
