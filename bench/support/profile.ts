/** Reading V8 CPU profiles (node:inspector's Profiler.stop) for the diagnose-* scripts. */

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
export interface Profile {
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

/**
 * A V8 CPU profile's busy time per unit of work (a request, an event), in µs, by category (Node
 * core, Sequelize, mysql2, express, this library, GC, ...), and the functions with the most self
 * time. Idle time is left out.
 */
export function summarizeProfile(profile: Profile, units: number, top: number, unit = 'request'): string {
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
  const us = (ms: number) => { const v = (ms * 1000) / units; return `${v < 100 ? v.toFixed(1) : Math.round(v)} µs`; };
  const lines = [`busy CPU per ${unit}: ${us(busy)} (${units} ${unit}s)`];
  for (const [c, ms] of [...byCategory].sort((a, b) => b[1] - a[1])) lines.push(`  ${c}: ${us(ms)} (${((100 * ms) / busy).toFixed(1)}%)`);
  lines.push('  top self time:');
  for (const [f, ms] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${((100 * ms) / busy).toFixed(1)}% ${us(ms)} ${f}`);
  return lines.join('\n');
}
