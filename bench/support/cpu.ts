/**
 * CPU time per process, to tell where a side's time goes on a 2-core machine where the service,
 * the emulator and MariaDB share the cores: CPU milliseconds per request of each, read from
 * /proc (Linux) before and after a round.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return NaN;
  }
}

/** The MariaDB server's pid, when it runs on this machine and /proc is readable. */
export function databasePid(): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
        if (comm === 'mariadbd' || comm === 'mysqld') return Number(entry);
      } catch {
        /* gone */
      }
    }
  } catch {
    /* no /proc */
  }
  return undefined;
}

export type CpuSample = Record<string, number>;

/** CPU ms so far of each named process. */
export function sampleCpu(pids: Record<string, number | undefined>): CpuSample {
  const out: CpuSample = {};
  for (const [name, pid] of Object.entries(pids)) if (pid !== undefined) out[name] = cpuMsOf(pid);
  return out;
}

/** CPU ms spent by each process between two samples, divided by `per` (requests, events). */
export function cpuPer(before: CpuSample, after: CpuSample, per: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(after)) out[name] = Math.round(((after[name]! - before[name]!) / per) * 1000) / 1000;
  return out;
}
