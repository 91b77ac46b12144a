import type { Sequelize } from 'sequelize';

/** The SQL dialects the Sequelize stores speak. */
export type SqlDialect = 'mysql' | 'mariadb' | 'sqlite' | 'postgres';

export function dialectOf(sequelize: Sequelize): SqlDialect {
  const d = sequelize.getDialect();
  if (d === 'mysql' || d === 'mariadb' || d === 'sqlite' || d === 'postgres') return d;
  throw new Error(`dapr-outbox: unsupported Sequelize dialect '${d}' (use mysql, mariadb, sqlite or postgres)`);
}

/** Quotes an identifier for the dialect. Table names come from options, never from users' input. */
export function quoteIdent(dialect: SqlDialect, name: string): string {
  return dialect === 'mysql' || dialect === 'mariadb' ? `\`${name.replace(/`/g, '``')}\`` : `"${name.replace(/"/g, '""')}"`;
}

/**
 * Whether `SELECT ... FOR UPDATE SKIP LOCKED` is available: MySQL 8.0.1+, MariaDB 10.6+,
 * PostgreSQL 9.5+. Elsewhere claims fall back to a conditional UPDATE.
 */
export function supportsSkipLocked(dialect: SqlDialect, version: string): boolean {
  if (dialect === 'postgres') return true;
  if (dialect === 'sqlite') return false;
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (/mariadb/i.test(version) || dialect === 'mariadb') return major > 10 || (major === 10 && minor >= 6);
  return major > 8 || (major === 8 && (minor > 0 || patch >= 1));
}

/** MariaDB 10.5+ has INSERT ... RETURNING; MySQL has none. */
export function supportsInsertReturning(version: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m || !/mariadb/i.test(version)) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 10 || (major === 10 && minor >= 5);
}
