/**
 * The loop both cleanups share: one bounded delete after another until a short batch (or the
 * pass is halted), yielding between batches. Never throws: a failed batch is returned with the
 * count deleted before it.
 */
export async function deleteInBatches(
  deleteBatch: (limit: number) => Promise<number>,
  limit: number,
  halted: () => boolean,
): Promise<{ total: number; error?: unknown }> {
  let total = 0;
  try {
    for (;;) {
      const deleted = await deleteBatch(limit);
      total += deleted;
      if (deleted < limit || halted()) return { total };
      await breather();
    }
  } catch (error) {
    return { total, error };
  }
}

/** Lets requests waiting for a connection or the SQLite write gate go between two batches. */
export function breather(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
