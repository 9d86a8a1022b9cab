/**
 * What the destination writer knows of the destination between transactions: each stream's
 * positions (stored and applied), the epoch markers, the latest heartbeat.
 *
 * Why one object apart from the writer: the writer, the transaction runner (which records what a
 * committed transaction set, or forgets what an aborted one showed wrong) and the cluster writer
 * all read and change the same knowledge; each gets this object, none reaches into another.
 */
import type { WriterPosition } from './position.js';

/** A stream's progress in one domain (the standalone server, or one slot of a cluster). */
export interface DomainState {
  /** Last position applied (memory; ≥ the stored one). */
  pos: WriterPosition | null;
  /** What the position key holds, as far as this writer knows (null: absent). */
  stored: WriterPosition | null;
}

export interface StreamState {
  /** Standalone: domain 0. Cluster: one per slot, loaded on first use. */
  domains: Map<number, DomainState>;
  errorChecked: boolean;
}

export class WriterState {
  /** By stream name; a stream missing (or a domain missing) is re-read from the destination. */
  readonly streams = new Map<string, StreamState>();
  /** Epoch marker values (null: absent), by marker key; shared by all streams. */
  readonly markers = new Map<string, number | null>();
  /** Wall-clock time (ms) of the latest heartbeat applied; null before the first. */
  heartbeatMs: number | null = null;

  /** The state of `stream`, made empty (nothing known) on first use. */
  stream(stream: string): StreamState {
    let st = this.streams.get(stream);
    if (!st) {
      st = { domains: new Map(), errorChecked: false };
      this.streams.set(stream, st);
    }
    return st;
  }
}

/** A domain as just read from the destination: applied up to what is stored. */
export function emptyDomain(pos: WriterPosition | null): DomainState {
  return { pos, stored: pos };
}
