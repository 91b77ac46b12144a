/**
 * Figure 6, memory: RSS (and the V8 heap) of a process publishing 100,000 events through the
 * bus in units of work, sampled after the GC every 5,000 events. Baseline: the same process
 * after warm-up (the first 20% of the events). Target: flat after warm-up, no leak.
 *
 * "Flat" is judged on the heap, which the GC makes exact, through the least-squares slope over
 * the samples after warm-up: retained bytes per event. A leak of anything per event (a map
 * entry, a listener, a promise kept in a set) shows as tens or hundreds of bytes per event; the
 * bar is 16. RSS is reported next to it (the allocator keeps pages it may use again, so RSS
 * moves in steps and is not a per-event measure).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { runMigrations } from '../src/extend';
import { createBenchDb } from './support/db';
import { EmulatorProcess } from './support/emulator';
import type { BenchContext, FigureResult } from './support/figure';
import { linearFit, round } from './support/stats';

const MAX_BYTES_PER_EVENT = 16;
const MB = 1024 * 1024;

interface Sample {
  events: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  failed: number;
  firstFailure?: string;
}

export async function memory(ctx: BenchContext): Promise<FigureResult> {
  const total = ctx.quick ? 1000 : 100_000;
  const sampleEvery = ctx.quick ? 125 : 5000;
  const perUnit = 10;
  const concurrency = 16;
  const db = await createBenchDb('mysql');
  const emu = await EmulatorProcess.start('orders');
  try {
    await runMigrations(db.sequelize);
    const samples = await runChild({ dbUrl: db.url, daprPort: emu.port, total, perUnit, concurrency, sampleEvery }, () => emu.clearRecords());
    const warm = samples.filter((s) => s.events >= total * 0.2);
    const xs = warm.map((s) => s.events);
    const heap = linearFit(xs, warm.map((s) => s.heapUsed));
    const rss = linearFit(xs, warm.map((s) => s.rss));
    const first = warm[0]!;
    const last = warm[warm.length - 1]!;
    const span = last.events - first.events;
    const data = {
      events: total,
      unitsOfWork: Math.ceil(total / perUnit),
      eventsPerUnit: perUnit,
      concurrency,
      warmUpEvents: first.events,
      heapBytesPerEvent: round(heap.slope),
      rssBytesPerEvent: round(rss.slope),
      heapGrowthMB: round((heap.slope * span) / MB),
      rssGrowthMB: round((rss.slope * span) / MB),
      rssAfterWarmUpMB: round(first.rss / MB),
      rssEndMB: round(last.rss / MB),
      heapAfterWarmUpMB: round(first.heapUsed / MB),
      heapEndMB: round(last.heapUsed / MB),
      // Publish attempts that failed (the dispatcher retries them): none on a quiet machine.
      failedPublishes: last.failed,
      firstFailure: last.firstFailure,
      maxBytesPerEvent: MAX_BYTES_PER_EVENT,
      samples: samples.map((s) => ({ events: s.events, rssMB: round(s.rss / MB), heapMB: round(s.heapUsed / MB) })),
    };
    ctx.log(`  fig 6: heap ${data.heapAfterWarmUpMB} -> ${data.heapEndMB} MB (${data.heapBytesPerEvent} B/event), RSS ${data.rssAfterWarmUpMB} -> ${data.rssEndMB} MB (${data.rssBytesPerEvent} B/event) over ${span} events after warm-up`);
    return {
      key: 'memory',
      data,
      rows: [
        {
          figure: '6',
          what: `memory over ${total.toLocaleString('en')} events (after warm-up)`,
          db: 'mysql',
          measured: `RSS ${data.rssEndMB} MB, heap ${data.heapEndMB} MB`,
          baseline: `RSS ${data.rssAfterWarmUpMB} MB, heap ${data.heapAfterWarmUpMB} MB`,
          result: `heap ${data.heapBytesPerEvent} B/event, RSS ${data.rssBytesPerEvent} B/event`,
          target: `flat: heap <= ${MAX_BYTES_PER_EVENT} B/event`,
          met: ctx.quick ? null : Math.abs(data.heapBytesPerEvent) <= MAX_BYTES_PER_EVENT,
        },
      ],
    };
  } finally {
    await emu.stop();
    await db.close();
  }
}

/** Runs the measured process; `onSample` runs after each sample (the emulator's records are emptied there). */
function runChild(params: object, onSample: () => Promise<void>): Promise<Sample[]> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(__dirname, 'fig6-memory-child.ts'), JSON.stringify(params)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: join(__dirname, '..'),
  });
  // Whatever way the bench ends, the measured process ends with it.
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.off('exit', kill));
  const samples: Sample[] = [];
  const pending: Promise<void>[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      samples.push(JSON.parse(line) as Sample);
      pending.push(onSample().catch(() => {}));
    } catch {
      /* not a sample */
    }
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      void Promise.all(pending).then(() => {
        if (code !== 0) reject(new Error(`the memory child exited with ${code}`));
        else if (samples.length < 3) reject(new Error(`the memory child printed ${samples.length} samples`));
        else resolve(samples);
      });
    });
  });
}
