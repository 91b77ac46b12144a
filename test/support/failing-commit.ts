import type { Sequelize } from 'sequelize';

/**
 * Makes COMMIT fail on SQLite: a deferred foreign key is checked only at COMMIT, so the writes
 * of a transaction succeed and its COMMIT fails. Insert with `ORPHAN_INSERT` inside it.
 */
export async function createDeferredForeignKey(sequelize: Sequelize): Promise<void> {
  await sequelize.query('CREATE TABLE parents (id INTEGER PRIMARY KEY)');
  await sequelize.query('CREATE TABLE children (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED)');
}

/** A row whose parent does not exist: accepted now, refused at COMMIT. */
export const ORPHAN_INSERT = 'INSERT INTO children (parent_id) VALUES (42)';
