import type { Outbox } from '../../src';
import { SequelizeOutboxStore, type OutboxRecord } from '../../src/extend';

/** Reads outbox rows by event id, through a store of the test's own on the outbox's table. */
export function readRows(outbox: Outbox, ids: readonly string[]): Promise<OutboxRecord[]> {
  return new SequelizeOutboxStore(outbox.sequelize, outbox.tables.outbox).find(ids);
}
