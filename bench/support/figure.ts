/** What every figure gets and gives back to run.ts. */
import type { DbKind } from './db';

export interface BenchContext {
  /** Tiny sizes for a CI smoke run: every figure is still computed, none is judged. */
  quick: boolean;
  /**
   * The databases to run on: MariaDB always, SQLite too where the figure means something there,
   * PostgreSQL where the figure runs on it (and the server is reachable).
   */
  dbs: DbKind[];
  log(line: string): void;
  /**
   * Epoch ms by which this figure should be done: rounds past the minimum are skipped after it.
   * The budgets add up to under 13 minutes on the 2-core machine when it is quiet.
   */
  until: number;
}

/** One line of the printed table. */
export interface FigureRow {
  figure: string;
  what: string;
  db: DbKind | '-';
  measured: string;
  baseline: string;
  /** The ratio or percentile the target is about. */
  result: string;
  target: string;
  /** null when there is no target for this line, or in a --quick run. */
  met: boolean | null;
}

export interface FigureResult {
  /** Key in results.json. */
  key: string;
  rows: FigureRow[];
  /** Everything measured, machine-readable. */
  data: Record<string, unknown>;
}

export type Figure = (ctx: BenchContext) => Promise<FigureResult>;

export const dbLabel = (kind: DbKind) => ({ mysql: 'MariaDB', postgres: 'PostgreSQL', sqlite: 'SQLite' })[kind];
