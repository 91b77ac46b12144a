/**
 * bench/results.json is git-ignored, so a full run also writes its table into bench/RESULTS.md,
 * between two markers: the notes around them (what the figures mean, the bottlenecks found) are
 * written by hand and kept.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Machine } from './machine';

const START = '<!-- latest-full-run:start (written by bench/run.ts) -->';
const END = '<!-- latest-full-run:end -->';

export function writeResultsMarkdown(path: string, table: string, machine: Machine & { loadAverageAtEnd: number }, startedAt: string, durationS: number): void {
  const block = [
    START,
    `Run ${startedAt}, ${durationS} s in all.`,
    '',
    `Machine: ${machine.nproc} cores (nproc), ${machine.memoryGiB} GiB memory, CPU ${machine.cpu} (/proc/cpuinfo), ` +
      `Node ${machine.node}, MariaDB ${machine.mariadb ?? 'not reachable'}, PostgreSQL ${machine.postgres ?? 'not reachable'}. Load average (1 min): ${machine.loadAverageAtStart} at the start, ` +
      `${machine.loadAverageAtEnd} at the end (other work shares the machine).`,
    '',
    table,
    END,
  ].join('\n');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const i = text.indexOf(START);
  const j = text.indexOf(END);
  if (i >= 0 && j > i) text = text.slice(0, i) + block + text.slice(j + END.length);
  else text = `# Benchmark results\n\n\`npm run bench\` writes the section below after each full run; bench/results.json has every figure measured.\n\n${block}\n${text ? `\n${text}` : ''}`;
  writeFileSync(path, text);
}
