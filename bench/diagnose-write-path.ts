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
import { bareService, outboxService, registration } from './support/services';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function category(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8 (program)';
  if (/\/(src|dist)\//.test(url) && !url.includes('node_modules')) return 'dapr-outbox';
  if (url.includes('/bench/')) return 'load generator';
  for (const dep of ['sequelize', 'mysql2', 'express', 'body-parser', 'router']) if (url.includes(`node_modules/${dep}/`)) return dep === 'body-parser' || dep === 'router' ? 'express' : dep;
  if (url.includes('node_modules')) return 'other packages';
  if (url.startsWith('node:')) return 'Node core (JS)';
  return 'native (socket writes, microtasks, ...)';
}

function summarize(profile: Profile, requests: number, top: number): string {
  const selfMs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) selfMs.set(profile.samples[i]!, (selfMs.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busy = 0;
  for (const n of profile.nodes) {
    const ms = selfMs.get(n.id) ?? 0;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    busy += ms;
    const c = category(url, functionName);
    byCategory.set(c, (byCategory.get(c) ?? 0) + ms);
    const where = url.replace(/.*node_modules\//, '').replace(/.*\/(src|bench)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${where}${where ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
  }
  const us = (ms: number) => `${Math.round((ms * 1000) / requests)} µs`;
  const lines = [`busy CPU per request: ${us(busy)} (${requests} requests)`];
  for (const [c, ms] of [...byCategory].sort((a, b) => b[1] - a[1])) lines.push(`  ${c}: ${us(ms)} (${((100 * ms) / busy).toFixed(1)}%)`);
  lines.push('  top self time:');
  for (const [f, ms] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${((100 * ms) / busy).toFixed(1)}% ${us(ms)} ${f}`);
  return lines.join('\n');
}

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
    return `${side}: ${Math.round(r.rps)} req/s\n${summarize(profile as unknown as Profile, r.completed, 15)}`;
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
