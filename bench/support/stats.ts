/**
 * Small statistics for the bench. The machine is shared and noisy, so every figure is a median
 * over rounds (or a percentile over samples), never a single run.
 */

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/**
 * Percentile with linear interpolation between the closest ranks (the usual "type 7"): stable on
 * small samples, where nearest-rank jumps from one sample to the next.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** Key by key median of records with the same keys (CPU per process, time per phase, over rounds). */
export function medianOfRecords(samples: ReadonlyArray<Record<string, number>>): Record<string, number> {
  const keys = Object.keys(samples[0] ?? {});
  return Object.fromEntries(keys.map((k) => [k, round(median(samples.map((x) => x[k]!)))]));
}

/** Least-squares slope and intercept of y over x. */
export function linearFit(xs: readonly number[], ys: readonly number[]): { slope: number; intercept: number } {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return { slope: 0, intercept: ys[0] ?? 0 };
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i]!;
    sy += ys[i]!;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  return { slope, intercept: my - slope * mx };
}

/** Rounds for display and JSON: keeps 3 significant digits under 100, integers above. */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value)) return value;
  if (Math.abs(value) >= 100) return Math.round(value);
  return Number(value.toPrecision(digits));
}

/**
 * Runs `sides` in turn for up to `rounds` rounds, reversing the order every other round so
 * neither side always goes first. With `until` (epoch ms), no new round starts after that time
 * once `minRounds` are done: the bench keeps its time budget on a busy machine, with fewer
 * rounds rather than a partial one.
 */
export async function alternate<K extends string>(
  rounds: number,
  sides: readonly K[],
  run: (side: K, round: number) => Promise<number>,
  budget: { until?: number; minRounds?: number } = {},
): Promise<Record<K, number[]>> {
  const out = Object.fromEntries(sides.map((s) => [s, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < rounds; r++) {
    if (budget.until !== undefined && r >= (budget.minRounds ?? 2) && Date.now() > budget.until) break;
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) out[side].push(await run(side, r));
  }
  return out;
}
