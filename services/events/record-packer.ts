/**
 * Consecutive events (split when needed, split-event.ts) packed into EventBatch records no bigger
 * than `maxBytes` (record-limit.ts), order preserved: at once (`packEncoded`, `packBatches`) or as
 * a stream (`RecordPacker`). Each record body is encoded once into a scratch buffer and copied out
 * once.
 */
import { EventScratch, batchBodySize } from './event-scratch.js';
import type { ChangeEvent } from './model.js';
import { checkRecordLimit, DEFAULT_MAX_RECORD_BYTES, maxEventBytes, WIRE_HEADER_BYTES } from './record-limit.js';
import { pieceOverBudget, splitOversized } from './split-event.js';

export interface PackedBatch {
  events: ChangeEvent[];
  /** The EventBatch Avro body (no wire header): `WIRE_HEADER_BYTES + body.length <= maxBytes`. */
  body: Buffer;
}

export interface PackOptions {
  /** At most this many events per batch (default: no bound but the size). */
  maxEvents?: number;
}

/**
 * Scratch of `packEncoded`: the current record's events are encoded back to back at [0, pos), and
 * each record body is copied out of it once. Kept between calls (up to 4 record limits).
 */
const packScratch = new EventScratch();

/** Consecutive events (split when needed) packed into EventBatch bodies under `maxBytes`, in order. */
export function packEncoded(events: ChangeEvent[], maxBytes = DEFAULT_MAX_RECORD_BYTES, options: PackOptions = {}): PackedBatch[] {
  checkRecordLimit(maxBytes);
  const maxEvents = options.maxEvents ?? Number.POSITIVE_INFINITY;
  const budget = maxEventBytes(maxBytes);
  const s = packScratch;
  const out: PackedBatch[] = [];
  let cur: ChangeEvent[] = [];
  /** `event` was just encoded at [start, s.pos), after the current record's events at [0, start). */
  const add = (event: ChangeEvent, start: number) => {
    if (cur.length > 0 && (cur.length >= maxEvents || WIRE_HEADER_BYTES + batchBodySize(cur.length + 1, s.pos) > maxBytes)) {
      out.push({ events: cur, body: s.frame(0, start, cur.length) });
      cur = [];
      s.buf.copyWithin(0, start, s.pos);
      s.pos -= start;
    }
    cur.push(event);
  };
  s.pos = 0;
  try {
    for (const e of events) {
      const start = s.pos;
      const n = s.append(e, budget);
      if (n >= 0) {
        add(e, start);
        continue;
      }
      for (const p of splitOversized(e, -n, budget)) {
        const at = s.pos;
        const m = s.append(p, budget);
        if (m < 0) throw pieceOverBudget(p, -m, budget);
        add(p, at);
      }
    }
    if (cur.length > 0) out.push({ events: cur, body: s.frame(0, s.pos, cur.length) });
  } finally {
    s.reset(Math.max(4 * 1024 * 1024, 4 * maxBytes));
  }
  return out;
}

/** One record sealed by a `RecordPacker`. */
export interface SealedRecord {
  /** The EventBatch Avro body (no wire header): `WIRE_HEADER_BYTES + body.length <= maxBytes`. */
  body: Buffer;
  /** Events (or pieces) in the record. */
  count: number;
  /** The first snapshot-begin event of the record, if any (the producer indexes it). */
  snapshotBegin: { epoch: number; db: number } | null;
}

/** Scratch capacity a `RecordPacker` keeps while idle (`trim`). */
const IDLE_PACKER_BYTES = 64 * 1024;

/**
 * `packEncoded` as a stream: events are encoded as they come (split when needed) into one open
 * record, and every record that fills up is sealed (copied out, exact size) into `out`. The
 * events themselves are not kept: memory is the open record's bytes plus the sealed records the
 * caller holds. Same records, byte for byte, as `packEncoded` over the same events, as long as
 * `seal` is called where `packEncoded`'s input would end.
 */
export class RecordPacker {
  private readonly s = new EventScratch(16 * 1024);
  private readonly budget: number;
  /** Events per record at most; a change applies from the next push (capture packs snapshots and streams differently). */
  maxEvents: number;
  private count = 0;
  private begin: { epoch: number; db: number } | null = null;

  constructor(readonly maxBytes = DEFAULT_MAX_RECORD_BYTES, options: PackOptions = {}) {
    checkRecordLimit(maxBytes);
    this.budget = maxEventBytes(maxBytes);
    this.maxEvents = options.maxEvents ?? Number.POSITIVE_INFINITY;
  }

  /** Encoded bytes of the open record. */
  get openBytes(): number {
    return this.s.pos;
  }

  /** Events in the open record. */
  get openCount(): number {
    return this.count;
  }

  /** Encode `event` into the open record; records it completes are appended to `out`. Returns the bytes sealed. */
  push(event: ChangeEvent, out: SealedRecord[]): number {
    const s = this.s;
    const start = s.pos;
    const n = s.append(event, this.budget);
    if (n >= 0) return this.add(event, start, out);
    let sealed = 0;
    for (const p of splitOversized(event, -n, this.budget)) {
      const at = s.pos;
      const m = s.append(p, this.budget);
      if (m < 0) throw pieceOverBudget(p, -m, this.budget);
      sealed += this.add(p, at, out);
    }
    return sealed;
  }

  /**
   * Encodes `event` into the open record when it fits a record alone (returns null, like `push`);
   * else encodes nothing and returns its pieces. `push`ing them one by one makes the same records
   * as `push(event)`; a caller can then hand each record over (and wait for Kafka) before the next
   * piece is encoded, instead of holding them all. Why one call: the event is measured once (a
   * separate size check before `push` measured every command twice, 6 % of capture's CPU at
   * 100,000 SET/s).
   */
  pushOrPieces(event: ChangeEvent, out: SealedRecord[]): ChangeEvent[] | null {
    const start = this.s.pos;
    const n = this.s.append(event, this.budget);
    if (n >= 0) {
      this.add(event, start, out);
      return null;
    }
    return splitOversized(event, -n, this.budget);
  }

  /** Seals the open record (if it holds any event) into `out`. Returns the bytes sealed. */
  seal(out: SealedRecord[]): number {
    if (this.count === 0) return 0;
    const body = this.s.frame(0, this.s.pos, this.count);
    out.push({ body, count: this.count, snapshotBegin: this.begin });
    this.count = 0;
    this.begin = null;
    this.s.pos = 0;
    return body.length;
  }

  /** Lets a grown scratch buffer go when no record is open. */
  trim(): void {
    if (this.count === 0) this.s.reset(IDLE_PACKER_BYTES);
  }

  /** `event` was just encoded at [start, pos), after the open record's events at [0, start). */
  private add(event: ChangeEvent, start: number, out: SealedRecord[]): number {
    const s = this.s;
    let sealed = 0;
    if (this.count > 0 && (this.count >= this.maxEvents || WIRE_HEADER_BYTES + batchBodySize(this.count + 1, s.pos) > this.maxBytes)) {
      const body = s.frame(0, start, this.count);
      out.push({ body, count: this.count, snapshotBegin: this.begin });
      sealed = body.length;
      this.count = 0;
      this.begin = null;
      s.buf.copyWithin(0, start, s.pos);
      s.pos -= start;
    }
    this.count++;
    if (this.begin === null && event.kind === 'snapshot-begin') this.begin = { epoch: event.pos.epoch, db: event.db };
    return sealed;
  }
}

/** Consecutive events packed into batches whose encoded record (wire header included) fits `maxBytes`. */
export function packBatches(events: ChangeEvent[], maxBytes = DEFAULT_MAX_RECORD_BYTES, options: PackOptions = {}): ChangeEvent[][] {
  return packEncoded(events, maxBytes, options).map((b) => b.events);
}
