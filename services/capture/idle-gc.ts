/**
 * Keeping the process small: garbage collection at the moments the pipeline knows about.
 *
 * - During a burst, kafkajs copies every record several times while it builds a produce request
 *   (encoders growing by doubling, the compressed batch, the request), so ArrayBuffer garbage
 *   piles up at a rate of several times the data rate, and V8 only collects it after it has grown
 *   by ~64 MB. `paceExternal` runs a scavenge (a young-generation collection, well under a
 *   millisecond for this heap) each time ArrayBuffer memory has grown by 24 MB since the last
 *   one: those buffers die young, and the peak stays lower (1M-key full sync: peaks 226-253 MB
 *   instead of 227-279 MB over six runs each, no CPU cost measurable).
 * - A burst (a full sync, a write storm) also leaves garbage behind that nothing collects once
 *   the pipeline goes quiet (nothing allocates), so the process would keep its peak size.
 *   `collectIfIdle`: once the pipeline has moved enough bytes and has been quiet for a moment,
 *   one full collection returns the process to its resting size.
 *
 * `gc()` is exposed at run time (the same as node's --expose-gc flag); if that is refused, both
 * do nothing.
 */
import { fullCollection } from '../common/heap-budget.js';

/** Bytes moved since the last collection before a quiet moment triggers one. */
const MIN_BYTES = 32 * 1024 * 1024;
/** At most this many bytes per check (heartbeats, a trickle of writes) still count as quiet. */
const QUIET_BYTES = 256 * 1024;
/** Consecutive quiet checks before collecting (checks are about a second apart). */
const QUIET_CHECKS = 2;

let sinceCollect = 0;
let sinceCheck = 0;
let quietChecks = 0;

/** The pipeline moved `n` bytes (records handed to Kafka). */
export function noteActivity(n: number): void {
  sinceCollect += n;
  sinceCheck += n;
}

/**
 * Called about every second: collects once when enough bytes went through since the last
 * collection and the last checks were quiet. Returns true when it collected.
 */
export function collectIfIdle(): boolean {
  quietChecks = sinceCheck <= QUIET_BYTES ? quietChecks + 1 : 0;
  sinceCheck = 0;
  if (sinceCollect < MIN_BYTES || quietChecks < QUIET_CHECKS) return false;
  sinceCollect = 0;
  const gc = fullCollection();
  if (!gc) return false;
  gc();
  return true;
}

/** ArrayBuffer growth between two scavenges. */
const PACE_BYTES = 24 * 1024 * 1024;
let paceMark = 0;

/**
 * Milliseconds between two looks at ArrayBuffer memory: `process.memoryUsage()` walks the heap's
 * spaces, and called for every chunk of a snapshot it took a tenth of capture's CPU.
 */
const PACE_CHECK_MS = 50;
let paceCheckedAt = 0;

/** Called as data goes through: a scavenge when ArrayBuffer memory grew by PACE_BYTES since the last one. */
export function paceExternal(): void {
  const now = performance.now();
  if (now - paceCheckedAt < PACE_CHECK_MS) return;
  paceCheckedAt = now;
  const ab = process.memoryUsage().arrayBuffers;
  if (ab < paceMark + PACE_BYTES) {
    if (ab < paceMark) paceMark = ab; // V8 collected meanwhile
    return;
  }
  const gc = fullCollection() as ((options?: { type: 'minor' | 'major' }) => void) | null;
  gc?.({ type: 'minor' });
  paceMark = process.memoryUsage().arrayBuffers;
}
