/**
 * Figure 4, scan scaling: the claim query and the cleanup query on a table of 1,000,000 rows
 * (mostly Published) over the same queries on 10,000 rows with the same mix. Target: <= 2x.
 *
 * The queries are the library's own builders (outbox-sql.ts), run as the store runs them:
 * - claim, MariaDB and PostgreSQL: SELECT ... WHERE next_attempt_time <= ? ORDER BY
 *   next_attempt_time LIMIT 100 FOR UPDATE SKIP LOCKED, then the UPDATE by primary key, in a
 *   transaction rolled back after;
 * - claim, SQLite: the conditional UPDATE with a claim token, rolled back after;
 * - cleanup: SELECT id ... WHERE state = Published AND modification_time < ? ORDER BY
 *   modification_time LIMIT 1000 (the delete that follows is by primary key).
 * Both sizes live in one database; the queries alternate between them, many times, medians.
 *
 * The admin API's events pages run on the same tables, through the store's own page(): the first
 * page, a page filtered to failed rows (state 3), and a `q` search whose text is in one row (the
 * bounded LIKE reads its whole window of SCAN_LIMIT rows). Target: <= 50 ms a page at 1M rows.
 * On PostgreSQL the claim's and the cleanup's plans at the large size are checked too: index
 * scans, no Seq Scan.
 */
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { DEFAULTS, EventState, resolveTableNames, runMigrations, SequelizeOutboxStore, type EventPageQuery } from '../src/extend';
import { PAGE_LIMIT, SCAN_LIMIT } from '../src/http/admin/admin-input';
import { dialectOf } from '../src/adapters/sequelize/dialect';
import { claimByToken, markClaimedByRowIds, selectDueForUpdate, selectExpiredPublished } from '../src/adapters/sequelize/outbox-sql';
import { explainPostgres, fillHistory, HISTORY_MIX } from '../test/support/history';
import { createBenchDb, type DbKind } from './support/db';
import { dbLabel, type BenchContext, type FigureResult, type FigureRow } from './support/figure';
import { alternate, median, round } from './support/stats';

const TARGET = 2;
/** Milliseconds an admin events page may take at the large size. */
const PAGE_TARGET_MS = 50;

/** The admin pages measured: what a person opening the dashboard, filtering and searching asks for. */
const PAGES: Record<'first' | 'failed' | 'terminal' | 'search', { label: string; query: Omit<EventPageQuery, 'limit' | 'scanLimit'> }> = {
  first: { label: 'admin events page, first', query: {} },
  failed: { label: 'admin events page, state=3', query: { state: EventState.PublishedFailed } },
  // The table holds none: the worst case of a state filter, which must not read the whole table.
  terminal: { label: 'admin events page, state=terminal (none)', query: { state: 'terminal' } },
  search: { label: 'admin events page, q (content)', query: { q: 'u999999"' } },
};
const DAY = 86_400_000;
/**
 * Rows per claim here: the small table's due rows (1% of 10,000), so that the claim fills its
 * LIMIT at both sizes. What is measured is how the query grows with the table, not the claim size.
 */
const CLAIM = 100;

export async function scanScaling(ctx: BenchContext): Promise<FigureResult> {
  const rows: FigureRow[] = [];
  const data: Record<string, unknown> = { target: TARGET };
  for (const kind of ctx.dbs) {
    const r = await measure(ctx, kind);
    data[kind] = r;
    for (const q of ['claim', 'cleanup'] as const) {
      rows.push({
        figure: '4',
        what: `${q} query, ${r.sizes.large.toLocaleString('en')} vs ${r.sizes.small.toLocaleString('en')} rows`,
        db: kind,
        measured: `${r[q].largeMs} ms`,
        baseline: `${r[q].smallMs} ms`,
        result: `growth ${r[q].growth}x`,
        target: `<= ${TARGET}x`,
        met: ctx.quick ? null : r[q].growth <= TARGET,
      });
    }
    for (const name of Object.keys(PAGES) as Array<keyof typeof PAGES>) {
      const p = r.pages[name];
      rows.push({
        figure: '4',
        what: `${PAGES[name].label}, ${r.sizes.large.toLocaleString('en')} rows`,
        db: kind,
        measured: `${p.largeMs} ms`,
        baseline: `${p.smallMs} ms at ${r.sizes.small.toLocaleString('en')}`,
        result: `${p.found} rows`,
        target: `<= ${PAGE_TARGET_MS} ms`,
        met: ctx.quick ? null : p.largeMs <= PAGE_TARGET_MS,
      });
    }
    if (kind === 'postgres') {
      // PostgreSQL picks its plan by statistics: at the large size it must still read indexes only.
      const plans = r.plans as Record<'claim' | 'cleanup', { large: { seqScan?: boolean; scans?: Array<{ type: string; index: string | null }> } }>;
      const seqScan = plans.claim.large.seqScan === true || plans.cleanup.large.seqScan === true;
      const indexes = [...new Set([...(plans.claim.large.scans ?? []), ...(plans.cleanup.large.scans ?? [])].map((n) => n.index).filter(Boolean))];
      rows.push({
        figure: '4',
        what: `claim and cleanup plans at ${r.sizes.large.toLocaleString('en')} rows`,
        db: kind,
        measured: seqScan ? 'Seq Scan' : `index scans (${indexes.length} indexes)`,
        baseline: '-',
        result: seqScan ? 'Seq Scan' : 'no Seq Scan',
        target: 'no Seq Scan',
        met: ctx.quick ? null : !seqScan,
      });
    }
  }
  return { key: 'scan_scaling', rows, data };
}

async function measure(ctx: BenchContext, kind: DbKind) {
  const sizes = { small: 10_000, large: ctx.quick ? 50_000 : 1_000_000 };
  const reps = ctx.quick ? 5 : 40;
  const db = await createBenchDb(kind);
  const s = db.sequelize;
  try {
    const now = Date.now();
    const tables = { small: 'scan_small', large: 'scan_large' } as const;
    const t0 = performance.now();
    for (const size of ['small', 'large'] as const) {
      await runMigrations(s, resolveTableNames({ outbox: tables[size], inbox: `${tables[size]}_inbox`, migrations: `${tables[size]}_migrations` }));
      await fillHistory(s, kind, tables[size], sizes[size], now);
    }
    const fillSeconds = round((performance.now() - t0) / 1000);
    const timeQuery = (table: string) => (kind === 'sqlite' ? claimSqlite(s, table, now) : claimLocked(s, kind, table, now));
    const claim = await alternate(reps, ['small', 'large'] as const, (size) => timeQuery(tables[size]), { until: ctx.until - 8000, minRounds: 10 });
    const cleanup = await alternate(reps, ['small', 'large'] as const, (size) => timeCleanup(s, tables[size], now), { until: ctx.until - 3000, minRounds: 10 });
    const stores = { small: new SequelizeOutboxStore(s, tables.small), large: new SequelizeOutboxStore(s, tables.large) };
    const pages = {} as Record<keyof typeof PAGES, { smallMs: number; largeMs: number; found: number }>;
    for (const name of Object.keys(PAGES) as Array<keyof typeof PAGES>) {
      const query: EventPageQuery = { ...PAGES[name].query, limit: PAGE_LIMIT.default, scanLimit: SCAN_LIMIT };
      let found = 0;
      const t = await alternate(reps, ['small', 'large'] as const, async (size) => {
        const t0 = performance.now();
        const page = await stores[size].page(query);
        const ms = performance.now() - t0;
        if (size === 'large') found = page.rows.length;
        return ms;
      }, { until: ctx.until, minRounds: 5 });
      pages[name] = { smallMs: round(median(t.small)), largeMs: round(median(t.large)), found };
    }
    const summary = (t: { small: number[]; large: number[] }) => {
      const smallMs = median(t.small);
      const largeMs = median(t.large);
      return { smallMs: round(smallMs), largeMs: round(largeMs), growth: round(largeMs / smallMs) };
    };
    const plans = {
      claim: { small: await plan(s, kind, claimQuery(kind, tables.small, now)), large: await plan(s, kind, claimQuery(kind, tables.large, now)) },
      cleanup: { small: await plan(s, kind, selectExpiredPublished(kind, tables.small, now - DAY, DEFAULTS.deleteBatchCount)), large: await plan(s, kind, selectExpiredPublished(kind, tables.large, now - DAY, DEFAULTS.deleteBatchCount)) },
    };
    const result = { sizes, reps: { claim: claim.small.length, cleanup: cleanup.small.length }, fillSeconds, mix: HISTORY_MIX, claim: summary(claim), cleanup: summary(cleanup), pages, plans };
    ctx.log(`  fig 4 ${dbLabel(kind)}: filled in ${fillSeconds} s; claim ${JSON.stringify(result.claim)}; cleanup ${JSON.stringify(result.cleanup)}; admin pages ${JSON.stringify(pages)}`);
    return result;
  } finally {
    await db.close();
  }
}

/**
 * The claim under row locks (MariaDB, PostgreSQL): SELECT ... FOR UPDATE SKIP LOCKED and one
 * UPDATE of the rows found by primary key, rolled back.
 */
async function claimLocked(s: Sequelize, kind: 'mysql' | 'postgres', table: string, now: number): Promise<number> {
  const tx = await s.transaction();
  try {
    const t0 = performance.now();
    const q = selectDueForUpdate(kind, table, CLAIM, now);
    const found = (await s.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT, transaction: tx })) as Array<{ id: number }>;
    if (found.length !== CLAIM) throw new Error(`claim found ${found.length} rows in ${table}, expected ${CLAIM}`);
    const u = markClaimedByRowIds(kind, table, found.map((r) => Number(r.id)), 'bench', now + 30_000, now);
    await s.query(u.sql, { replacements: u.params, raw: true, transaction: tx });
    return performance.now() - t0;
  } finally {
    await tx.rollback();
  }
}

/** The SQLite claim: one conditional UPDATE stamping a token on the due rows, rolled back. */
async function claimSqlite(s: Sequelize, table: string, now: number): Promise<number> {
  const tx: Transaction = await s.transaction({ type: 'IMMEDIATE' } as never);
  try {
    const t0 = performance.now();
    const q = claimByToken('sqlite', table, CLAIM, 'bench#1', now + 30_000, now);
    await s.query(q.sql, { replacements: q.params, raw: true, transaction: tx });
    return performance.now() - t0;
  } finally {
    await tx.rollback();
  }
}

async function timeCleanup(s: Sequelize, table: string, now: number): Promise<number> {
  const q = selectExpiredPublished(dialectOf(s), table, now - DAY, DEFAULTS.deleteBatchCount);
  const t0 = performance.now();
  const found = (await s.query(q.sql, { replacements: q.params, type: QueryTypes.SELECT })) as unknown[];
  const ms = performance.now() - t0;
  if (found.length !== DEFAULTS.deleteBatchCount) throw new Error(`cleanup found ${found.length} rows in ${table}, expected ${DEFAULTS.deleteBatchCount}`);
  return ms;
}

function claimQuery(kind: DbKind, table: string, now: number) {
  return kind === 'sqlite' ? claimByToken(kind, table, CLAIM, 'bench#1', now + 30_000, now) : selectDueForUpdate(kind, table, CLAIM, now);
}

/**
 * The plan the database chose (which index, how many rows it expects to read): the evidence
 * behind the growth. On PostgreSQL, the scan nodes and `seqScan`, which must stay false.
 */
async function plan(s: Sequelize, kind: DbKind, q: { sql: string; params: unknown[] }): Promise<unknown> {
  if (kind === 'postgres') {
    const { nodes } = await explainPostgres(s, q);
    return {
      seqScan: nodes.some((n) => n['Node Type'] === 'Seq Scan'),
      scans: nodes.filter((n) => /Scan/.test(n['Node Type'])).map((n) => ({ type: n['Node Type'], index: n['Index Name'] ?? null, rows: n['Plan Rows'] })),
    };
  }
  const sql = kind === 'mysql' ? `EXPLAIN ${q.sql.replace(/ FOR UPDATE SKIP LOCKED$/, '')}` : `EXPLAIN QUERY PLAN ${q.sql}`;
  const rows = (await s.query(sql, { replacements: q.params, type: QueryTypes.SELECT })) as Array<Record<string, unknown>>;
  return kind === 'mysql' ? rows.map((r) => ({ key: r.key, rows: r.rows, type: r.type, Extra: r.Extra })) : rows.map((r) => r.detail);
}
