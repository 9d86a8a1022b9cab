/**
 * Giving memory back after a burst.
 *
 * A burst (a full sync, a write storm) leaves garbage behind: records and their copies inside
 * kafkajs (external memory, up to the tens of MB V8 lets accumulate before it collects), decoded
 * keys promoted to the old generation. When the pipeline then goes quiet nothing allocates, so V8
 * never collects it and the process keeps its peak size. Once the pipeline has moved enough bytes
 * and has been idle for a moment, one full collection returns the process to its resting size.
 *
 * `gc()` is exposed at run time (the same as node's --expose-gc flag); if that is refused, this
 * does nothing.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes moved since the last collection before a quiet moment triggers one. */
const MIN_BYTES = 32 * 1024 * 1024;
/** At most this many bytes per check (heartbeats, a trickle of writes) still count as quiet. */
const QUIET_BYTES = 256 * 1024;
/** Consecutive quiet checks before collecting (checks are about a second apart). */
const QUIET_CHECKS = 2;

let collect: (() => void) | null | undefined;
let sinceCollect = 0;
let sinceCheck = 0;
let quietChecks = 0;

function gcFunction(): (() => void) | null {
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
  const gc = gcFunction();
  if (!gc) return false;
  gc();
  return true;
}
