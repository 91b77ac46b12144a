/**
 * `npm run bench` (full, <= 13 minutes on the 2-core machine) and `npm run bench -- --quick`
 * (tiny sizes, <= 60 s, every figure computed, none judged: a CI smoke run).
 *
 * Options: --quick; --only=1,3 (figures to run); --no-sqlite (MariaDB only).
 * Prints a table and writes bench/results.json (one key per figure). Exits 0 unless something
 * crashed: a missed target is a finding, not a failure.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { writePath } from './fig1-write-path';
import { latency } from './fig2-latency';
import { relayDrain } from './fig3-relay-drain';
import { scanScaling } from './fig4-scan-scaling';
import { subscriber } from './fig5-subscriber';
import { memory } from './fig6-memory';
import { peerPg } from './fig7-peer-pg';
import { ordering } from './fig8-ordering';
import { closeAllDbs, type DbKind } from './support/db';
import { killAllEmulators } from './support/emulator';
import type { BenchContext, Figure, FigureResult, FigureRow } from './support/figure';
import { describeMachine, machineLine } from './support/machine';
import { writeResultsMarkdown } from './support/report';
import { renderTable } from './support/table';

/**
 * `sqlite`: where the figure means something on SQLite too ('full': in full runs only; the
 * --quick smoke run keeps to MariaDB there, to stay under 60 s with the build).
 * `postgres`: the figure runs on PostgreSQL too, when it is reachable ('only': on it alone).
 */
const FIGURES: Array<{ n: string; name: string; run: Figure; sqlite: 'always' | 'full' | 'never'; postgres?: 'too' | 'only'; budgetS: number }> = [
  { n: '1', name: 'write path', run: writePath, sqlite: 'full', budgetS: 110 },
  { n: '2', name: 'commit-to-delivery latency', run: latency, sqlite: 'never', budgetS: 60 },
  { n: '3', name: 'relay drain', run: relayDrain, sqlite: 'full', budgetS: 200 },
  { n: '4', name: 'scan scaling', run: scanScaling, sqlite: 'always', postgres: 'too', budgetS: 60 },
  { n: '5', name: 'subscriber throughput', run: subscriber, sqlite: 'never', budgetS: 65 },
  { n: '6', name: 'memory', run: memory, sqlite: 'never', budgetS: 60 },
  { n: '7', name: 'side by side with pg-transactional-outbox (PostgreSQL)', run: peerPg, sqlite: 'never', postgres: 'only', budgetS: 140 },
  { n: '8', name: 'ordering keys: keyed over unkeyed', run: ordering, sqlite: 'never', postgres: 'too', budgetS: 60 },
];

interface Args {
  quick: boolean;
  only: Set<string> | null;
  sqlite: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, only: null, sqlite: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') args.quick = true;
    else if (a === '--no-sqlite') args.sqlite = false;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!v || !/^[1-8](,[1-8])*$/.test(v)) throw new Error(`--only must list figure numbers 1-8, like --only=1,3; got ${v ?? 'nothing'}`);
      args.only = new Set(v.split(','));
    } else throw new Error(`unknown argument ${a} (known: --quick, --only=1,3, --no-sqlite)`);
  }
  return args;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const machine = await describeMachine();
  if (!machine.mariadb) throw new Error('MariaDB is not reachable: set BENCH_MYSQL_URL or TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test)');
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`dapr-outbox bench${args.quick ? ' (--quick)' : ''} on ${machineLine(machine)}`);

  const rows: FigureRow[] = [];
  const figures: Record<string, unknown> = {};
  let crashed = false;
  for (const f of FIGURES) {
    if (args.only && !args.only.has(f.n)) continue;
    const sqlite = args.sqlite && (f.sqlite === 'always' || (f.sqlite === 'full' && !args.quick));
    const dbs: DbKind[] = f.postgres === 'only' ? [] : sqlite ? ['mysql', 'sqlite'] : ['mysql'];
    if (f.postgres) {
      if (machine.postgres) dbs.push('postgres');
      else log(`figure ${f.n}: PostgreSQL is not reachable (BENCH_POSTGRES_URL, TEST_POSTGRES_URL); ${f.postgres === 'only' ? 'skipped' : 'left out'}`);
    }
    if (dbs.length === 0) continue;
    const t0 = Date.now();
    const ctx: BenchContext = { quick: args.quick, dbs, log, until: t0 + (args.quick ? 8 : f.budgetS) * 1000 };
    log(`figure ${f.n}: ${f.name}...`);
    let result: FigureResult;
    try {
      result = await f.run(ctx);
    } catch (err) {
      // One figure crashing must not hide the others; the exit code says it crashed.
      crashed = true;
      log(`figure ${f.n} crashed: ${(err as Error).stack ?? String(err)}`);
      await closeAllDbs();
      killAllEmulators();
      rows.push({ figure: f.n, what: f.name, db: '-', measured: 'crashed', baseline: '-', result: '-', target: '-', met: null });
      figures[`fig${f.n}`] = { crashed: String((err as Error).message ?? err) };
      continue;
    }
    figures[result.key] = { ...result.data, seconds: Math.round((Date.now() - t0) / 100) / 10 };
    rows.push(...result.rows);
    log(`figure ${f.n} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  const durationS = Math.round((Date.now() - started) / 100) / 10;
  const table = renderTable(rows);
  process.stdout.write(`\n${table}\n\n${args.quick ? '--quick: tiny sizes, figures not judged. ' : ''}Total ${durationS} s on ${machineLine(machine)}\n`);
  const loadAverageAtEnd = Math.round(loadavg()[0]! * 100) / 100;
  process.stdout.write(`Load average (1 min) at start ${machine.loadAverageAtStart}, at end ${loadAverageAtEnd}: other work on this machine shares the 2 cores.\n`);
  const results = { quick: args.quick, startedAt: new Date(started).toISOString(), durationS, machine: { ...machine, loadAverageAtEnd }, table: rows, ...figures };
  writeFileSync(join(__dirname, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  // Only a complete full run stands for "the latest full figures".
  if (!args.quick && !args.only && args.sqlite && !crashed) {
    writeResultsMarkdown(join(__dirname, 'RESULTS.md'), table, { ...machine, loadAverageAtEnd }, results.startedAt, durationS);
    log('bench/RESULTS.md updated');
  }
  return crashed ? 1 : 0;
}

// Ctrl-C: drop the databases and stop the emulators before going.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`${signal}: cleaning up\n`);
    killAllEmulators();
    void closeAllDbs().finally(() => process.exit(130));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    await closeAllDbs();
    killAllEmulators();
    process.exitCode = 1;
  },
);
