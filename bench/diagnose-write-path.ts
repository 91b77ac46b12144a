/**
 * Where a request's CPU goes: POST /register with the outbox and the same handler in a bare
 * transaction (figure 1's two sides, MariaDB, the emulator as sidecar), each under load for 8 s
 * with the V8 profiler on for the measured part only (not start-up or warm-up).
 *
 *   npm run build && npx tsx bench/diagnose-write-path.ts [seconds]
 *
 * Prints, per side, the busy CPU per request in µs by category (Node core, Sequelize, mysql2,
 * express, this library, GC, ...) and the functions with the most self time, and writes
 * bench/profile-<side>.cpuprofile (open it in Chrome DevTools).
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { DaprPublisher } from '../src';
import { createBenchDb } from './support/db';
import { EmulatorProcess } from './support/emulator';
import { close, closedLoop, listen } from './support/load';
import { summarizeProfile, type Profile } from './support/profile';
import { bareService, outboxService, registration } from './support/services';

async function profileSide(side: 'outbox' | 'bare', seconds: number): Promise<string> {
  const db = await createBenchDb('mysql');
  const emu = await EmulatorProcess.start('users');
  const svc = await outboxService(db.sequelize, new DaprPublisher({ daprPort: emu.port }));
  const server = createServer(side === 'outbox' ? svc.app : await bareService(db.sequelize));
  const port = await listen(server);
  const session = new Session();
  try {
    await closedLoop({ port, path: '/register', concurrency: 32, durationMs: 2000, maxRequests: 1e7, body: registration });
    await svc.outbox.drain();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    const r = await closedLoop({ port, path: '/register', concurrency: 32, durationMs: seconds * 1000, maxRequests: 1e7, body: registration });
    await svc.outbox.drain();
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(__dirname, `profile-${side}.cpuprofile`), JSON.stringify(profile));
    return `${side}: ${Math.round(r.rps)} req/s\n${summarizeProfile(profile as unknown as Profile, r.completed, 15)}`;
  } finally {
    session.disconnect();
    await close(server);
    await svc.outbox.close();
    await emu.stop();
    await db.close();
  }
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 8);
  for (const side of ['outbox', 'bare'] as const) process.stdout.write(`${await profileSide(side, seconds)}\n\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
