/**
 * The measured process of figure 6, alone so that nothing else lives in its heap: an outbox on
 * MariaDB publishing to the emulator (another process), events published through the bus in
 * units of work. After every `sampleEvery` events it waits for the dispatches to finish, runs
 * the GC twice (started with --expose-gc) and prints one JSON line of process.memoryUsage().
 *
 * Run by fig6-memory.ts: node --expose-gc --import tsx bench/fig6-memory-child.ts '<json>'.
 */
import { Sequelize } from 'sequelize';
import { createOutbox, DaprPublisher, IntegrationEvent } from '../src';
import { silentLogger } from '../src/extend';

interface Params {
  dbUrl: string;
  daprPort: number;
  total: number;
  perUnit: number;
  concurrency: number;
  sampleEvery: number;
}

class OrderPlacedEvent extends IntegrationEvent {
  constructor(
    public orderId: number,
    public account: string,
    public amount: number,
  ) {
    super();
  }
}

async function main(): Promise<void> {
  const p = JSON.parse(process.argv[2] ?? '{}') as Params;
  const gc = (globalThis as { gc?: () => void }).gc;
  const sequelize = new Sequelize(p.dbUrl, { logging: false, pool: { max: 10 } });
  const outbox = createOutbox({ sequelize, publisher: new DaprPublisher({ daprPort: p.daprPort }), logger: silentLogger });
  await outbox.migrate();
  const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
  let published = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  outbox.on('failed', (f) => {
    failed++;
    firstFailure ??= f.error.message;
  });

  const sample = async () => {
    await outbox.drain();
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    print({ events: published, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, failed, firstFailure });
  };

  await sample();
  while (published < p.total) {
    // One chunk: sampleEvery events in units of work of perUnit events, `concurrency` at a time.
    const units = Math.ceil(Math.min(p.sampleEvery, p.total - published) / p.perUnit);
    let next = 0;
    const worker = async () => {
      while (next < units) {
        next++;
        await outbox.runInUnitOfWork(async () => {
          for (let k = 0; k < p.perUnit; k++) {
            const n = ++published;
            await outbox.bus.publish(new OrderPlacedEvent(n, `u${n}`, n % 1000));
          }
        });
      }
    };
    await Promise.all(Array.from({ length: p.concurrency }, worker));
    await sample();
  }
  await outbox.close();
  await sequelize.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`fig6 child failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
