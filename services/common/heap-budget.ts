/**
 * Keeping a busy process near a memory budget.
 *
 * Under a steady stream of events most objects die young, but those that wait a little (queued
 * events, a transaction being written) are promoted to the old generation and die there. V8 lets
 * that garbage pile up until the old generation reaches a limit it derives from the machine's
 * memory, not from what the process keeps: an applier keeping ~60 MB alive was seen at 500+ MB
 * RSS during a full sync. The heap limit itself can only be set on node's command line, which a
 * library or a process started by someone else does not control; so when the resident size
 * passes the budget, one full collection is asked for (at most every `minIntervalMs`), which
 * costs a few tens of ms for the live data of a pipeline.
 *
 * `gc()` is exposed at run time (the same as node's --expose-gc flag); if that is refused, this
 * does nothing.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | null | undefined;

/** node's full collection, or null when it cannot be had. */
export function fullCollection(): (() => void) | null {
  if (collect === undefined) {
    try {
      const existing = (globalThis as { gc?: () => void }).gc;
      if (typeof existing === 'function') collect = existing;
      else {
        setFlagsFromString('--expose-gc');
        const fn = runInNewContext('gc') as unknown;
        collect = typeof fn === 'function' ? (fn as () => void) : null;
      }
    } catch {
      collect = null;
    }
  }
  return collect;
}

/** Milliseconds between two readings of the resident size. */
const LOOK_INTERVAL_MS = 250;

export class HeapBudget {
  private last = 0;
  private lastLook = 0;
  /** Heap plus external memory right after the last collection asked for: what was alive. */
  private aliveAfterLast = 0;
  collections = 0;

  constructor(
    private readonly budgetBytes: number,
    private readonly minIntervalMs = 250,
    /** Growth since the last collection below which one is not worth its cost. */
    private readonly minGarbageBytes = 32 * 1024 * 1024,
  ) {}

  /**
   * Call between units of work: collects once when the resident size is over budget *and* the
   * heap has grown enough since the last collection to hold garbage worth collecting. Over budget
   * alone is not enough: the resident size falls slowly after a collection (freed pages are given
   * back lazily), and collecting every `minIntervalMs` while it does cost a busy applier more than
   * half its time in full collections of a heap that was mostly alive.
   */
  check(now = Date.now()): boolean {
    if (now - this.last < this.minIntervalMs) return false;
    // reading the resident size is a system call: not for every plan of a busy applier
    if (now - this.lastLook < LOOK_INTERVAL_MS) return false;
    this.lastLook = now;
    if (process.memoryUsage.rss() <= this.budgetBytes) return false;
    const held = heldBytes();
    if (held - this.aliveAfterLast < Math.max(this.minGarbageBytes, this.aliveAfterLast / 2)) return false;
    const gc = fullCollection();
    if (!gc) return false;
    this.last = now;
    gc();
    this.aliveAfterLast = heldBytes();
    this.collections++;
    return true;
  }
}

/** The JS heap in use plus memory held by JS objects outside it (Buffers). */
function heldBytes(): number {
  const h = getHeapStatistics();
  return h.used_heap_size + ((h as { external_memory?: number }).external_memory ?? 0);
}
