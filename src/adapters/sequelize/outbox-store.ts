import { QueryTypes, Transaction, type Sequelize } from 'sequelize';
import type {
  EventPage,
  EventPageQuery,
  EventState,
  FailedMark,
  LockedBatchOutcome,
  OutboxRowSummary,
  OutboxRecord,
  OutboxStats,
  OutboxStore,
  ReleaseOptions,
  RelayLockedOptions,
  RepublishFilter,
} from '../../ports/outbox-store';
import type { OutboxMessage } from '../../ports/publisher';
import { dialectOf, supportsInsertReturning, supportsSkipLocked, type SqlDialect } from './dialect';
import { inTransaction } from './transactions';
import { prepareConnection, writeGateFor, type WriteGate } from './write-gate';
import * as sql from './outbox-sql';
import { compareScopes, moveScopes, reserveSequences, scopeId, selectPositions, selectStarted, sortScopes, startTurns, type KeyPosition, type KeyScope } from './ordering-sql';

/** Keeps IN (...) lists well under every dialect's parameter limit. */
const CHUNK = 500;
/** Scopes per statement of lockScopes and moveKeysOn: at most 5 parameters each. */
const SCOPES_PER_STATEMENT = 200;

/**
 * READ COMMITTED, for the transactions that lock the rows they work on first and read nothing else
 * that matters: the claim (SELECT ... FOR UPDATE SKIP LOCKED, then its UPDATE) and the moves of
 * ordering keys. Under REPEATABLE READ, MariaDB also locks the gaps and every row a statement
 * examines: a claim locked the gaps around the due rows it read, where marks write their NULL
 * next_attempt_time and other claims their leases' times, and a key move locked rows other
 * writers held (on a small table it scans rather than seeks) and deadlocked.
 */
const ROW_LOCKS_ONLY = { isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED };

/**
 * How often a claim or mark is tried when the database ends it as a lock-conflict victim. Relays
 * meet on the next_attempt_time index all the time (a claim moves its rows' entries there, and a
 * claim that meets an entry another claim moved waits for that claim's COMMIT), so with several
 * relays InnoDB picks a victim now and then (under REPEATABLE READ, 3 relays draining 30 backlogs
 * of 100 rows in batches of 5: a deadlock in about one run of four). The statement or
 * transaction was rolled back whole, so running it again is safe; only a conflict that keeps
 * coming is reported.
 */
const LOCK_CONFLICT_ATTEMPTS = 6;

/** The outbox table on Sequelize: MySQL/MariaDB, PostgreSQL, SQLite. */
export class SequelizeOutboxStore implements OutboxStore {
  readonly dialect: SqlDialect;
  private readonly gate: WriteGate;
  private version: Promise<string> | undefined;
  private claims = 0;

  constructor(
    readonly sequelize: Sequelize,
    readonly table: string,
    /** The publish side's position in each ordering key (see ordering-sql.ts). */
    readonly keysTable = `${table}_keys`,
  ) {
    this.dialect = dialectOf(sequelize);
    this.gate = writeGateFor(sequelize);
  }

  async insert(rows: readonly OutboxMessage[], tx: Transaction | null, owner: string, leaseUntil: number, now: number): Promise<void> {
    if (rows.length === 0) return;
    const write = async (t: Transaction) => {
      await this.numberKeyedRows(rows, t, now);
      for (const q of sql.insertStatements(this.dialect, this.table, rows, owner, leaseUntil, now)) await this.exec(q, t);
    };
    if (tx) await write(tx);
    // A transaction of its own is run again when the database ended it over a lock conflict (keyed
    // rows take their keys' row locks); in the caller's transaction, that is the caller's call.
    else await retryLockConflicts(() => inTransaction(this.sequelize, write));
  }

  /**
   * Gives the keyed rows of an insert their sequence numbers, in `tx` and under their scopes'
   * locks (held to COMMIT, so the writers of one key take turns and numbers follow commit order),
   * and marks `waiting` each row whose key has an earlier event still to publish.
   */
  private async numberKeyedRows(rows: readonly OutboxMessage[], tx: Transaction, now: number): Promise<void> {
    const groups = new Map<string, { scope: KeyScope; rows: OutboxMessage[] }>();
    for (const r of rows) {
      if (r.orderingKey == null) continue;
      const scope = { pubsubName: r.pubsubName, topic: r.topic, orderingKey: r.orderingKey };
      const id = scopeId(scope);
      const group = groups.get(id);
      if (group) group.rows.push(r);
      else groups.set(id, { scope, rows: [r] });
    }
    if (groups.size === 0) return;
    const scopes = sortScopes([...groups.values()].map((g) => ({ ...g.scope, count: g.rows.length })));
    const positions = await this.lockScopes(scopes, tx, now);
    for (const [id, group] of groups) {
      const p = positions.get(id);
      if (!p) throw new Error(`the position of ordering key ${JSON.stringify(group.scope.orderingKey)} was not read back`);
      let sequence = p.lastSequence - group.rows.length;
      for (const r of group.rows) {
        r.sequence = ++sequence;
        r.waiting = sequence !== p.nextSequence;
      }
    }
  }

  /**
   * Locks scopes' rows in `tx` (creating them where needed) after adding `count` to each one's
   * last sequence, and resolves with their positions afterwards.
   */
  private async lockScopes(scopes: ReadonlyArray<KeyScope & { count: number }>, tx: Transaction, now: number): Promise<Map<string, KeyPosition>> {
    const positions = new Map<string, KeyPosition>();
    const returning = await this.insertReturning();
    for (let i = 0; i < scopes.length; i += SCOPES_PER_STATEMENT) {
      const chunk = scopes.slice(i, i + SCOPES_PER_STATEMENT);
      const q = reserveSequences(this.dialect, this.keysTable, chunk, now, returning);
      let rows: Array<Record<string, unknown>>;
      if (!returning) {
        await this.exec(q, tx);
        const p = selectPositions(this.dialect, this.keysTable, chunk);
        rows = (await this.sequelize.query(p.sql, { replacements: p.params, type: QueryTypes.SELECT, transaction: tx })) as Array<Record<string, unknown>>;
      } else {
        rows = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: tx })) as Array<Record<string, unknown>>;
      }
      for (const r of rows) {
        const p = { pubsubName: String(r.pubsub_name), topic: String(r.topic), orderingKey: String(r.ordering_key), lastSequence: Number(r.last_sequence), nextSequence: Number(r.next_sequence) };
        positions.set(scopeId(p), p);
      }
    }
    return positions;
  }

  /**
   * Moves keys on past published (or deleted) rows, in `tx`, given their scopes' positions read
   * under the lock: each scope that stood at a row's sequence now stands at the next one, and the
   * row there, if it is written and waiting, gets its turn: leased to `owner` (returned, to be
   * published next), or due at once when `owner` is null. A row whose scope already moved past it
   * (published again after another process took it over) moves nothing. A few statements for the
   * whole batch, however many keys it holds.
   */
  private async moveKeysOn(
    rows: ReadonlyArray<KeyScope & { sequence: number }>,
    positions: Map<string, KeyPosition>,
    tx: Transaction,
    owner: string | null,
    leaseUntil: number,
    now: number,
  ): Promise<OutboxRecord[]> {
    // Rows come by scope and sequence: a scope can move past several rows of one batch in turn.
    const moving: Array<KeyScope & { sequence: number }> = [];
    for (const r of rows) {
      const p = positions.get(scopeId(r));
      if (!p || p.nextSequence !== r.sequence) continue;
      p.nextSequence += 1;
      moving.push(r);
    }
    // Each scope once per statement; a scope moving past several rows takes one round per row.
    const next: OutboxRecord[] = [];
    let rest = moving;
    while (rest.length > 0) {
      const seen = new Set<string>();
      const round: typeof rest = [];
      const later: typeof rest = [];
      for (const r of rest) {
        if (seen.has(scopeId(r))) later.push(r);
        else {
          seen.add(scopeId(r));
          round.push(r);
        }
      }
      rest = later;
      for (let i = 0; i < round.length; i += SCOPES_PER_STATEMENT) {
        const chunk = round.slice(i, i + SCOPES_PER_STATEMENT);
        await this.exec(moveScopes(this.dialect, this.keysTable, chunk, now), tx);
        // The next row of a scope that moves again in a later round is published with this batch.
        const turns = chunk.filter((r) => !rest.some((x) => scopeId(x) === scopeId(r)));
        if (turns.length === 0) continue;
        const started = await this.exec(startTurns(this.dialect, this.table, turns, owner, leaseUntil, now), tx);
        if (owner !== null && started > 0) next.push(...(await this.select(selectStarted(this.dialect, this.table, turns, owner, leaseUntil), tx)));
      }
    }
    return next;
  }

  async markPublishedInOrder(messages: readonly OutboxMessage[], owner: string, leaseUntil: number, now: number): Promise<OutboxRecord[]> {
    const rows = keyedRows(messages);
    if (rows.length === 0) return [];
    return retryLockConflicts(() =>
      inTransaction(
        this.sequelize,
        async (tx) => {
          const positions = await this.lockScopes(uniqueScopes(rows), tx, now);
          await this.exec(sql.markPublished(this.dialect, this.table, rows.map((r) => r.id), now), tx);
          return this.moveKeysOn(rows, positions, tx, owner, leaseUntil, now);
        },
        ROW_LOCKS_ONLY,
      ),
    );
  }

  claimDue(limit: number, now: number, owner: string, leaseUntil: number): Promise<OutboxRecord[]> {
    return retryLockConflicts(() => this.claimOnce(limit, now, owner, leaseUntil));
  }

  private async claimOnce(limit: number, now: number, owner: string, leaseUntil: number): Promise<OutboxRecord[]> {
    if (this.dialect === 'postgres') {
      const q = sql.claimReturning(this.dialect, this.table, limit, owner, leaseUntil, now);
      const rows = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: null })) as Array<Record<string, unknown>>;
      // RETURNING keeps no order: oldest due first, as the other dialects' claims give them.
      return rows
        .map((r) => ({ due: Number(r.due_at), record: toRecord(r) }))
        .sort((a, b) => a.due - b.due || a.record.rowId - b.record.rowId)
        .map((r) => r.record);
    }
    if (await this.usesSkipLocked()) {
      return inTransaction(this.sequelize, async (tx) => {
        const rows = await this.select(sql.selectDueForUpdate(this.dialect, this.table, limit, now), tx);
        if (rows.length === 0) return [];
        await this.exec(sql.markClaimedByRowIds(this.dialect, this.table, rows.map((r) => r.rowId), owner, leaseUntil, now), tx);
        return rows.map((r) => ({ ...r, state: 1 as EventState, lockOwner: owner, lockedUntil: leaseUntil, nextAttemptTime: leaseUntil, timesSent: r.timesSent + 1, rowVersion: r.rowVersion + 1, modificationTime: now }));
      }, ROW_LOCKS_ONLY);
    }
    // Without SKIP LOCKED each claim stamps its own token, so concurrent claimers never share rows.
    const token = `${owner}#${++this.claims}`;
    return this.gate.run(async () => {
      await this.exec(sql.claimByToken(this.dialect, this.table, limit, token, leaseUntil, now), null, false);
      const rows = await this.select(sql.selectByOwner(this.dialect, this.table, token), null);
      if (rows.length === 0) return rows;
      // Hand the rows to the caller's owner name, so marks and releases match.
      const ids = rows.map((r) => r.id);
      for (let i = 0; i < ids.length; i += CHUNK) {
        await this.exec(
          {
            sql: `UPDATE ${this.quoted()} SET lock_owner = ? WHERE lock_owner = ? AND event_id IN (${ids.slice(i, i + CHUNK).map(() => '?').join(', ')})`,
            params: [owner, token, ...ids.slice(i, i + CHUNK)],
          },
          null,
          false,
        );
      }
      return rows.map((r) => ({ ...r, lockOwner: owner }));
    });
  }

  async relayLocked(
    limit: number,
    now: number,
    send: (rows: OutboxRecord[]) => Promise<LockedBatchOutcome>,
    options: RelayLockedOptions = {},
  ): Promise<number | null> {
    if (!(await this.usesSkipLocked())) return null;
    let sent = false;
    const idle = options.idleLimit === undefined ? null : sql.idleLimit(this.dialect, options.idleLimit);
    // A lock conflict before the rows went out is retried; after, the transaction is gone and the
    // rows are due again (published once more by a later pass, which the subscribers' inbox absorbs).
    const once = () =>
      inTransaction(this.sequelize, async (tx) => {
        const rows = await this.select(sql.selectDueForUpdate(this.dialect, this.table, limit, now), tx);
        if (rows.length === 0) return 0;
        if (idle) await this.exec(idle.on, tx);
        sent = true;
        try {
          return await this.sendLocked(rows, send, tx);
        } finally {
          // The session's own limit back before COMMIT or ROLLBACK (a connection the database has
          // ended cannot take it, and goes: the error that matters is the one already thrown).
          if (idle?.off) await this.exec(idle.off, tx).catch(() => undefined);
        }
        // READ COMMITTED: row locks only. Under REPEATABLE READ the SELECT's next-key locks on the
        // next_attempt_time index make the marks of concurrent relays deadlock (MariaDB).
      }, ROW_LOCKS_ONLY);
    for (let attempt = 1; ; attempt++) {
      try {
        return await once();
      } catch (err) {
        if (sent || attempt >= LOCK_CONFLICT_ATTEMPTS || !isLockConflict(err)) throw err;
        await lockConflictPause(attempt);
      }
    }
  }

  /** relayLocked's work on the rows it locked: send them, then write the outcome in `tx`. */
  private async sendLocked(
    rows: OutboxRecord[],
    send: (rows: OutboxRecord[]) => Promise<LockedBatchOutcome>,
    tx: Transaction,
  ): Promise<number> {
    const outcome = await send(rows);
    const rowIds = new Map(rows.map((r) => [r.id, r.rowId]));
    const publishedRows = outcome.published.map((id) => rowIds.get(id)).filter((id): id is number => id !== undefined);
    for (let i = 0; i < publishedRows.length; i += CHUNK) {
      await this.exec(sql.markPublishedByRowIds(this.dialect, this.table, publishedRows.slice(i, i + CHUNK), outcome.now), tx);
    }
    for (const m of outcome.failed) {
      const rowId = rowIds.get(m.id);
      if (rowId !== undefined) await this.exec(sql.markFailedByRowId(this.dialect, this.table, rowId, m.error, m.nextAttemptTime, outcome.now), tx);
    }
    // Keyed rows published: their keys move on, the next event of each due at once.
    const published = new Set(outcome.published);
    const keyed = keyedRows(rows.filter((r) => published.has(r.id)));
    if (keyed.length > 0) {
      const positions = await this.lockScopes(uniqueScopes(keyed), tx, outcome.now);
      await this.moveKeysOn(keyed, positions, tx, null, outcome.now, outcome.now);
    }
    return rows.length;
  }

  async markPublished(ids: readonly string[], now: number): Promise<void> {
    await this.inChunks(ids, (chunk) => this.exec(sql.markPublished(this.dialect, this.table, chunk, now), null, false));
  }

  async markFailed(marks: readonly FailedMark[], owner: string, now: number): Promise<void> {
    if (marks.length === 0) return;
    await this.gate.run(async () => {
      for (const m of marks) {
        await retryLockConflicts(() => this.exec(sql.markFailed(this.dialect, this.table, m.id, owner, m.error, m.nextAttemptTime, now), null, false));
      }
    });
  }

  async extendLease(ids: readonly string[], owner: string, leaseUntil: number, now: number): Promise<string[]> {
    const held: string[] = [];
    await this.inChunks(ids, async (chunk) => {
      const extended = await this.exec(sql.extendLease(this.dialect, this.table, chunk, owner, leaseUntil, now), null, false);
      // Every row matched: all still ours. Otherwise ask which, so none is published twice.
      if (extended === chunk.length) held.push(...chunk);
      else {
        const q = sql.selectHeld(this.dialect, this.table, chunk, owner);
        const rows = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: null })) as Array<{ event_id: unknown }>;
        held.push(...rows.map((r) => String(r.event_id)));
      }
    });
    return held;
  }

  async currentTime(): Promise<number> {
    const q = sql.currentTime(this.dialect);
    const [row] = (await this.sequelize.query(q.sql, { type: QueryTypes.SELECT, transaction: null })) as Array<{ t: unknown }>;
    return Number(row?.t);
  }

  async release(ids: readonly string[], owner: string, now: number, options: ReleaseOptions = {}): Promise<void> {
    await this.inChunks(ids, (chunk) => this.exec(sql.release(this.dialect, this.table, chunk, owner, now, options.undoAttempt), null, false));
  }

  async deletePublished(before: number, limit: number): Promise<number> {
    const q = sql.selectExpiredPublished(this.dialect, this.table, before, limit);
    const rows = await this.sequelize.query(q.sql, {
      replacements: q.params,
      type: QueryTypes.SELECT,
      transaction: null,
    });
    const rowIds = (rows as Array<{ id: unknown }>).map((r) => Number(r.id));
    if (rowIds.length === 0) return 0;
    let deleted = 0;
    for (let i = 0; i < rowIds.length; i += CHUNK) {
      deleted += await this.exec(sql.deleteByRowIds(this.dialect, this.table, rowIds.slice(i, i + CHUNK)), null);
    }
    return deleted;
  }

  async republish(filter: RepublishFilter, now: number): Promise<number> {
    if (filter.ids && filter.ids.length === 0) return 0;
    return this.exec(sql.republish(this.dialect, this.table, filter, now), null);
  }

  async page(query: EventPageQuery): Promise<EventPage> {
    const rows: OutboxRowSummary[] = [];
    // An exact event id is found wherever it is, on the first page, before the content matches.
    if (query.q !== undefined && query.before === undefined) {
      const hit = await this.summaries(sql.selectSummaryByEventId(this.dialect, this.table, query.q));
      rows.push(...hit.filter((r) => matches(r, query)));
    }
    const [bounds] = (await this.sequelize.query(sql.rowIdBounds(this.dialect, this.table).sql, { type: QueryTypes.SELECT, transaction: null })) as Array<{ lo: unknown; hi: unknown }>;
    if (bounds?.hi === null || bounds?.hi === undefined) return { rows, next: null };
    const lowest = Number(bounds.lo);
    const upper = Math.min(query.before ?? Number.MAX_SAFE_INTEGER, Number(bounds.hi) + 1);
    const windowed = query.state !== undefined || query.topic !== undefined || query.q !== undefined;
    const lower = windowed ? Math.max(lowest, upper - query.scanLimit) : null;
    const found = await this.summaries(sql.selectPage(this.dialect, this.table, query, upper, lower));
    rows.push(...found.filter((r) => !rows.some((x) => x.rowId === r.rowId)));
    let next: number | null;
    if (found.length >= query.limit) next = found[found.length - 1]!.rowId;
    else next = lower !== null && lower > lowest ? lower : null;
    return { rows, next };
  }

  async deleteTerminalFailed(filter: RepublishFilter): Promise<number> {
    if (filter.ids && filter.ids.length === 0) return 0;
    let deleted = 0;
    for (;;) {
      const q = sql.selectTerminalFailed(this.dialect, this.table, filter, CHUNK);
      const found = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: null })) as Array<Record<string, unknown>>;
      if (found.length === 0) return deleted;
      const plain = found.filter((r) => r.ordering_key === null || r.ordering_key === undefined).map((r) => Number(r.id));
      let n = plain.length > 0 ? await this.exec(sql.deleteTerminalByRowIds(this.dialect, this.table, plain), null) : 0;
      const keyed = found.filter((r) => r.ordering_key !== null && r.ordering_key !== undefined);
      if (keyed.length > 0) n += await this.deleteKeyedTerminal(keyed);
      deleted += n;
      // Fewer than a batch: that was the last. None deleted: the rows changed meanwhile; stop rather than spin.
      if (found.length < CHUNK || n === 0) return deleted;
    }
  }

  /**
   * Deletes keyed terminal failures, each moving its key on in the same transaction: the event
   * after it becomes due at once. A deleted event is skipped: its subscribers never get it (a
   * router with the inbox on waits `orderingGapTimeout` for it, then goes on).
   */
  private async deleteKeyedTerminal(found: ReadonlyArray<Record<string, unknown>>): Promise<number> {
    const rows = found
      .map((r) => ({ rowId: Number(r.id), pubsubName: String(r.pubsub_name), topic: String(r.topic), orderingKey: String(r.ordering_key), sequence: Number(r.key_sequence) }))
      .sort((a, b) => compareScopes(a, b) || a.sequence - b.sequence);
    const now = await this.currentTime();
    return retryLockConflicts(() =>
      inTransaction(this.sequelize, async (tx) => {
        const positions = await this.lockScopes(uniqueScopes(rows), tx, now);
        let deleted = 0;
        const gone: typeof rows = [];
        for (const r of rows) {
          if ((await this.exec(sql.deleteTerminalByRowIds(this.dialect, this.table, [r.rowId]), tx)) !== 1) continue;
          deleted += 1;
          gone.push(r);
        }
        await this.moveKeysOn(gone, positions, tx, null, now, now);
        return deleted;
      }, ROW_LOCKS_ONLY),
    );
  }

  private async summaries(q: sql.Query): Promise<OutboxRowSummary[]> {
    const rows = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: null })) as Array<Record<string, unknown>>;
    return rows.map(toSummary);
  }

  async find(ids: readonly string[]): Promise<OutboxRecord[]> {
    const out: OutboxRecord[] = [];
    for (let i = 0; i < ids.length; i += CHUNK) {
      out.push(...(await this.select(sql.selectByEventIds(this.dialect, this.table, ids.slice(i, i + CHUNK)), null)));
    }
    return out;
  }

  async stats(): Promise<OutboxStats> {
    const q = sql.countByState(this.dialect, this.table);
    const rows = (await this.sequelize.query(q.sql, { type: QueryTypes.SELECT, transaction: null })) as Array<Record<string, unknown>>;
    const stats: OutboxStats = { notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 0 };
    for (const r of rows) {
      const n = Number(r.n);
      switch (Number(r.state)) {
        case 0: stats.notPublished += n; break;
        case 1: stats.inProgress += n; break;
        case 2: stats.published += n; break;
        case 3:
          if (Number(r.terminal) === 1) stats.terminalFailed += n;
          else stats.publishedFailed += n;
          break;
      }
    }
    return stats;
  }

  async oldestPendingTime(): Promise<number | null> {
    const q = sql.oldestPending(this.dialect, this.table);
    const rows = (await this.sequelize.query(q.sql, { type: QueryTypes.SELECT, transaction: null })) as Array<{ t: unknown }>;
    const t = rows[0]?.t;
    return t === null || t === undefined ? null : Number(t);
  }

  /** Whether claims use SKIP LOCKED; asked of the server once. */
  usesSkipLocked(): Promise<boolean> {
    if (this.dialect === 'sqlite') return Promise.resolve(false);
    if (this.dialect === 'postgres') return Promise.resolve(true);
    return this.serverVersion().then((v) => supportsSkipLocked(this.dialect, v));
  }

  /** Whether an INSERT ... ON DUPLICATE KEY UPDATE can answer with RETURNING (MariaDB 10.5+). */
  private insertReturning(): Promise<boolean> {
    if (this.dialect !== 'mysql' && this.dialect !== 'mariadb') return Promise.resolve(true);
    return this.serverVersion().then(supportsInsertReturning);
  }

  /** The MySQL/MariaDB server's version text, asked once. */
  private serverVersion(): Promise<string> {
    if (!this.version) {
      this.version = (async () => {
        await prepareConnection(this.sequelize);
        const [row] = (await this.sequelize.query('SELECT VERSION() AS v', { type: QueryTypes.SELECT, transaction: null })) as Array<{ v: string }>;
        return String(row?.v ?? '');
      })();
      this.version.catch(() => (this.version = undefined));
    }
    return this.version;
  }

  private quoted(): string {
    return this.dialect === 'mysql' || this.dialect === 'mariadb' ? `\`${this.table}\`` : `"${this.table}"`;
  }

  /** Runs `fn` per chunk of ids while holding the SQLite gate: `fn` must call exec with gated = false. */
  private async inChunks(ids: readonly string[], fn: (chunk: readonly string[]) => Promise<unknown>): Promise<void> {
    if (ids.length === 0) return;
    await this.gate.run(async () => {
      for (let i = 0; i < ids.length; i += CHUNK) {
        const chunk = ids.slice(i, i + CHUNK);
        await retryLockConflicts(() => fn(chunk));
      }
    });
  }

  private async select(q: sql.Query, tx: Transaction | null): Promise<OutboxRecord[]> {
    const rows = (await this.sequelize.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: tx })) as Array<Record<string, unknown>>;
    return rows.map(toRecord);
  }

  /**
   * Runs a write and returns the affected row count. Writes outside a transaction pass the SQLite
   * gate unless the caller already holds it (`gated` false).
   */
  private async exec(q: sql.Query, tx: Transaction | null, gated = true): Promise<number> {
    const run = async () => {
      if (this.dialect === 'sqlite') {
        // Sequelize runs a RAW query through sqlite3's all(), which reports no change count;
        // BULKUPDATE goes through run() and resolves with the count.
        return Number(await this.sequelize.query(q.sql, { replacements: q.params, transaction: tx, type: QueryTypes.BULKUPDATE }));
      }
      const [result, meta] = (await this.sequelize.query(q.sql, { replacements: q.params, transaction: tx, raw: true })) as [unknown, unknown];
      return affectedRows(this.dialect, result, meta);
    };
    if (tx || !gated || !this.gate.serial) return run();
    return this.gate.run(run);
  }
}

/**
 * The database ended the statement or transaction to resolve a lock conflict, and it may be run
 * again: deadlock or lock wait timeout (MySQL/MariaDB 1213, 1205), deadlock or serialization
 * failure (PostgreSQL 40P01, 40001), a busy database (SQLite).
 */
export function isLockConflict(err: unknown): boolean {
  const e = err as { parent?: unknown; original?: unknown } | undefined;
  for (const c of [e, e?.parent, e?.original] as Array<{ code?: unknown; errno?: unknown } | undefined>) {
    if (!c || typeof c !== 'object') continue;
    if (c.errno === 1213 || c.errno === 1205) return true;
    if (['ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', '40P01', '40001', 'SQLITE_BUSY'].includes(String(c.code))) return true;
  }
  return false;
}

async function retryLockConflicts<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= LOCK_CONFLICT_ATTEMPTS || !isLockConflict(err)) throw err;
      await lockConflictPause(attempt);
    }
  }
}

/** A few milliseconds, jittered, so the conflicting claimers do not meet again at once. */
function lockConflictPause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, attempt * 5 * (0.5 + Math.random())));
}

function affectedRows(dialect: SqlDialect, result: unknown, meta: unknown): number {
  if (dialect === 'sqlite') return Number((meta as { changes?: number } | undefined)?.changes ?? 0);
  if (dialect === 'postgres') return Number((meta as { rowCount?: number } | undefined)?.rowCount ?? 0);
  return Number((result as { affectedRows?: number } | undefined)?.affectedRows ?? (meta as { affectedRows?: number } | undefined)?.affectedRows ?? 0);
}

/** The keyed messages among `messages`, by scope and sequence (the order scopes are locked in). */
function keyedRows(messages: readonly OutboxMessage[]): Array<KeyScope & { id: string; sequence: number }> {
  const rows: Array<KeyScope & { id: string; sequence: number }> = [];
  for (const m of messages) {
    if (m.orderingKey == null || m.sequence == null) continue;
    rows.push({ id: m.id, pubsubName: m.pubsubName, topic: m.topic, orderingKey: m.orderingKey, sequence: Number(m.sequence) });
  }
  return rows.sort((a, b) => compareScopes(a, b) || a.sequence - b.sequence);
}

/** Each scope of `rows` once, in sortScopes order, with nothing to reserve: lockScopes only locks them. */
function uniqueScopes(rows: readonly KeyScope[]): Array<KeyScope & { count: number }> {
  const seen = new Map<string, KeyScope & { count: number }>();
  for (const r of rows) if (!seen.has(scopeId(r))) seen.set(scopeId(r), { pubsubName: r.pubsubName, topic: r.topic, orderingKey: r.orderingKey, count: 0 });
  return sortScopes([...seen.values()]);
}

function num(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

/** Whether an exact-id hit also passes the page's state and topic filters. */
function matches(r: OutboxRowSummary, query: EventPageQuery): boolean {
  if (query.topic !== undefined && r.topic !== query.topic) return false;
  if (query.state === 'terminal') return r.terminal;
  return query.state === undefined || r.state === query.state;
}

/** The columns a summary and a whole record share. */
function commonFields(r: Record<string, unknown>) {
  return {
    rowId: Number(r.id),
    id: String(r.event_id),
    eventTypeName: String(r.event_type_name),
    topic: String(r.topic),
    pubsubName: String(r.pubsub_name),
    state: Number(r.state) as EventState,
    timesSent: Number(r.times_sent),
    creationTime: Number(r.creation_time),
    modificationTime: Number(r.modification_time),
    nextAttemptTime: num(r.next_attempt_time),
    lastError: (r.last_error as string | null) ?? null,
  };
}

function toSummary(r: Record<string, unknown>): OutboxRowSummary {
  const summary = commonFields(r) as Writable<OutboxRowSummary>;
  summary.terminal = summary.state === 3 && summary.nextAttemptTime === null;
  summary.preview = String(r.preview ?? '');
  return summary;
}

/**
 * A row as the relay and the dispatcher use it. Built by adding to commonFields' object: spreading
 * that object into a larger literal took V8's slow path, about 20 µs a row against under 1 µs (a
 * tenth of the relay's CPU per event, and more in GC).
 */
export function toRecord(r: Record<string, unknown>): OutboxRecord {
  const record = commonFields(r) as Writable<OutboxRecord>;
  record.content = String(r.content);
  record.lockOwner = (r.lock_owner as string | null) ?? null;
  record.lockedUntil = num(r.locked_until);
  record.rowVersion = Number(r.row_version);
  record.traceparent = (r.traceparent as string | null) ?? null;
  record.tracestate = (r.tracestate as string | null) ?? null;
  record.orderingKey = (r.ordering_key as string | null | undefined) ?? null;
  record.sequence = num(r.key_sequence);
  return record;
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };
