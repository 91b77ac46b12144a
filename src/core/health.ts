import { OutboxConfigError } from '../errors';
import type { OutboxOverview } from '../ports/outbox-store';
import { errorMessage } from './logger';
import type { ProcessorStatus } from './processors';

/** Thresholds of `outbox.health()` and `outbox.healthHandler()`. Durations in seconds. */
export interface HealthOptions {
  /** Unhealthy when the oldest row still to be published is older than this, seconds. Default 300 (5 min). `null`: no limit. */
  maxPendingAge?: number | null;
  /** Unhealthy when more rows than this wait to be published. Default null (no limit). */
  maxBacklog?: number | null;
  /** Unhealthy when more rows than this are terminal-failed. Default null (no limit). */
  maxTerminalFailures?: number | null;
  /**
   * Unhealthy when the background processors are not running (start() was not called, or stop()
   * was), or when one of them started no pass for `stalledAfter` of its intervals. Default true;
   * set false on replicas that run no processors.
   */
  processors?: boolean;
  /** A processor that started no pass for this many of its intervals counts as stalled. Default 10. */
  stalledAfter?: number;
  /** Ask the sidecar's health check (when the publisher has one); unhealthy when it fails. Default true. */
  sidecar?: boolean;
  /** Longest wait for the sidecar's answer, seconds. Default 2. */
  sidecarTimeout?: number;
}

export type ResolvedHealthOptions = { [K in keyof HealthOptions]-?: Exclude<HealthOptions[K], undefined> };

export const HEALTH_DEFAULTS: Readonly<ResolvedHealthOptions> = Object.freeze({
  maxPendingAge: 300,
  maxBacklog: null,
  maxTerminalFailures: null,
  processors: true,
  stalledAfter: 10,
  sidecar: true,
  sidecarTimeout: 2,
});

/** What `outbox.health()` reports. Times are epoch ms; ages are milliseconds. */
export interface OutboxHealth {
  /** No threshold crossed, every check answered. */
  healthy: boolean;
  /** Why not, one sentence each (empty when healthy). */
  reasons: string[];
  processors: {
    running: boolean;
    /** Each scheduled pass with its last start and end (this process's clock) and last failure. */
    passes: ProcessorStatus[];
  };
  /** Rows still to be published; null when the outbox could not be read. */
  backlog: number | null;
  /** Age of the oldest of them, on the database clock; null when none (or unknown). */
  oldestPendingAgeMs: number | null;
  terminalFailures: number | null;
  inboxSize: number | null;
  /** The sidecar's health check: null when not asked (option off, or a publisher without one). */
  sidecar: { healthy: boolean; error?: string } | null;
  /** When this report was made (epoch ms). */
  checkedAt: number;
}

/** What the health report is made of; the engine supplies it. */
export interface HealthSources {
  overview: () => Promise<OutboxOverview>;
  running: boolean;
  startedAt: number | null;
  passes: ProcessorStatus[];
  checkSidecar?: (timeoutMs: number) => Promise<void>;
}

/** Applies the defaults and checks every threshold; throws OutboxConfigError naming the option. */
export function resolveHealthOptions(input: HealthOptions = {}): ResolvedHealthOptions {
  const out = { ...HEALTH_DEFAULTS };
  const limit = (key: 'maxPendingAge' | 'maxBacklog' | 'maxTerminalFailures') => {
    const v = input[key];
    if (v === undefined) return;
    if (v !== null && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw new OutboxConfigError(key, v, 'must be a number >= 0, or null for no limit');
    out[key] = v;
  };
  limit('maxPendingAge');
  limit('maxBacklog');
  limit('maxTerminalFailures');
  for (const key of ['processors', 'sidecar'] as const) {
    const v = input[key];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw new OutboxConfigError(key, v, 'must be a boolean');
    out[key] = v;
  }
  for (const key of ['stalledAfter', 'sidecarTimeout'] as const) {
    const v = input[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new OutboxConfigError(key, v, 'must be a number > 0');
    out[key] = v;
  }
  return out;
}

/** Builds the report: reads the overview and asks the sidecar at once. Never rejects. */
export async function checkHealth(sources: HealthSources, options: ResolvedHealthOptions, now = Date.now()): Promise<OutboxHealth> {
  const reasons: string[] = [];
  const [overview, sidecar] = await Promise.all([
    sources.overview().catch((err: unknown) => {
      reasons.push(`the outbox could not be read: ${errorMessage(err)}`);
      return null;
    }),
    options.sidecar && sources.checkSidecar
      ? sources.checkSidecar(options.sidecarTimeout * 1000).then(
          (): { healthy: boolean; error?: string } => ({ healthy: true }),
          (err: unknown) => ({ healthy: false, error: errorMessage(err) }),
        )
      : null,
  ]);
  if (sidecar && !sidecar.healthy) reasons.push(`the sidecar is not healthy: ${sidecar.error}`);
  if (options.processors) {
    if (!sources.running) reasons.push('the background processors are not running (outbox.start() was not called, or outbox.stop() was)');
    else {
      for (const p of sources.passes) {
        const since = Math.max(p.lastStart ?? 0, sources.startedAt ?? 0);
        const limitMs = options.stalledAfter * p.everySeconds * 1000;
        if (now - since > limitMs) reasons.push(`processor ${p.name} started no pass for ${Math.round((now - since) / 1000)} s (it runs every ${p.everySeconds} s)`);
      }
    }
  }
  if (overview) {
    const ageSeconds = overview.oldestPendingAgeMs === null ? null : overview.oldestPendingAgeMs / 1000;
    if (options.maxPendingAge !== null && ageSeconds !== null && ageSeconds > options.maxPendingAge) {
      reasons.push(`the oldest unpublished event is ${Math.round(ageSeconds)} s old (maxPendingAge ${options.maxPendingAge} s)`);
    }
    if (options.maxBacklog !== null && overview.backlog > options.maxBacklog) reasons.push(`${events(overview.backlog)} waiting to be published (maxBacklog ${options.maxBacklog})`);
    if (options.maxTerminalFailures !== null && overview.terminalFailed > options.maxTerminalFailures) {
      reasons.push(`${events(overview.terminalFailed)} failed for good (maxTerminalFailures ${options.maxTerminalFailures})`);
    }
  }
  return {
    healthy: reasons.length === 0,
    reasons,
    processors: { running: sources.running, passes: sources.passes },
    backlog: overview?.backlog ?? null,
    oldestPendingAgeMs: overview?.oldestPendingAgeMs ?? null,
    terminalFailures: overview?.terminalFailed ?? null,
    inboxSize: overview?.inboxSize ?? null,
    sidecar,
    checkedAt: now,
  };
}

function events(n: number): string {
  return n === 1 ? '1 event' : `${n} events`;
}
