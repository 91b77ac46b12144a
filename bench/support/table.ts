/** The printed table, as Markdown so that RESULTS.md can hold it as is. */
import { dbLabel, type FigureRow } from './figure';

const HEAD = ['#', 'what', 'db', 'measured', 'baseline', 'result', 'target', 'met'];

export function renderTable(rows: readonly FigureRow[]): string {
  const cells = rows.map((r) => [r.figure, r.what, r.db === '-' ? '-' : dbLabel(r.db), r.measured, r.baseline, r.result, r.target, r.met === null ? '-' : r.met ? 'yes' : 'NO']);
  const widths = HEAD.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(HEAD), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}
