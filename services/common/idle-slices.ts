/**
 * Background work in slices that gives way: one slice per event-loop turn, so I/O is never held
 * up for long, and none while the service is busy with work that matters more.
 *
 * Used by the two warm-ups (capture/warm-up.ts, applier/warm-up.ts). Why the waiting: on two busy
 * cores a rehearsal that runs beside a snapshot takes its CPU from the snapshot, one to one (a
 * full sync measured ~0.3 s longer with both warm-ups running beside it); the moments before the
 * snapshot (the source forking, the group join) and after it (the other service finishing) are
 * idle for the process that rehearses.
 */

export interface SliceOptions {
  /** Ends the work early (the service stops, or real traffic makes the rest pointless). */
  stopped?: () => boolean;
  /** While true, no slice runs: it is checked every `pollMs`. */
  busy?: () => boolean;
  pollMs?: number;
}

export interface SliceResult {
  /** Units done (whole slices). */
  units: number;
  /** From the start to the end, waiting included. */
  ms: number;
  /** Of `ms`, the time spent waiting for `busy` to clear. */
  waitedMs: number;
}

/**
 * Runs `slice` (which does `perSlice` units of work) until `total` units are done or `stopped`;
 * between slices it yields one event-loop turn, and waits while `busy`.
 */
export async function runInSlices(total: number, perSlice: number, slice: () => void | Promise<void>, options: SliceOptions = {}): Promise<SliceResult> {
  const started = performance.now();
  const pollMs = options.pollMs ?? 50;
  let waitedMs = 0;
  let units = 0;
  while (units < total && !options.stopped?.()) {
    if (options.busy?.()) {
      const from = performance.now();
      while (options.busy() && !options.stopped?.()) await new Promise<void>((resolve) => setTimeout(resolve, pollMs));
      waitedMs += performance.now() - from;
      continue;
    }
    await slice();
    units += perSlice;
    if (units < total) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { units, ms: Math.round(performance.now() - started), waitedMs: Math.round(waitedMs) };
}

/**
 * Logs how a warm-up ended. A failed warm-up does no harm (the path compiles under real traffic
 * instead), so it is a warning and the service goes on.
 */
export function logWarmUp<R extends SliceResult>(log: { info(o: object, msg: string): void; warn(o: object, msg: string): void }, warmUp: Promise<R>): void {
  warmUp.then(
    (r) => log.info(r, 'warm-up: command path rehearsed'),
    (err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'warm-up failed (no harm: the command path compiles under real traffic instead)'),
  );
}
