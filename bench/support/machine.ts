/** What the figures were measured on: they mean little without it. */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { mysqlVersion, postgresVersion } from './db';

export interface Machine {
  nproc: number;
  memoryGiB: number;
  cpu: string;
  node: string;
  mariadb: string | null;
  /** null when PostgreSQL is not reachable: the PostgreSQL figures are then left out. */
  postgres: string | null;
  /** 1-minute load average when the run started: the machine is shared, and this says how busy it was. */
  loadAverageAtStart: number;
}

export async function describeMachine(): Promise<Machine> {
  let cpu = 'unknown';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    /* not Linux */
  }
  return {
    nproc: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    cpu,
    node: process.version,
    mariadb: await mysqlVersion(),
    postgres: await postgresVersion(),
    loadAverageAtStart: Math.round(loadavg()[0]! * 100) / 100,
  };
}

export function machineLine(m: Machine): string {
  return `${m.nproc} cores (nproc), ${m.memoryGiB} GiB memory, CPU ${m.cpu}, Node ${m.node}, MariaDB ${m.mariadb ?? 'not reachable'}, PostgreSQL ${m.postgres ?? 'not reachable'}`;
}
