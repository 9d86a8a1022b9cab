/**
 * The records of one partition fetched and not applied yet, as whole events.
 *
 * The consumer hands over what it fetches and moves on; the applier holds it here until the plan
 * (barrier.ts) takes it, instead of rewinding the partition when something must wait: a record is
 * read from Kafka once. Records delivered again (after a rebalance, kafkajs reads from the
 * committed offset) are recognised by offset and dropped, and counted.
 *
 * Events split into record pieces (services/events/split.ts) are rebuilt here; an event enters the
 * queue whole, with the offset of the record holding its first piece, and no offset commit passes
 * that record while its series is incomplete.
 */
import type { ChangeEvent } from '../events/model.js';
import { PieceAssembler } from '../events/split.js';
import type { QueuedEvent } from './barrier.js';

/**
 * What a decoded event costs in memory beyond its record bytes (objects, Buffer headers): small
 * keys are ~60 bytes on the wire and several times that decoded, so bytes alone would let a
 * queue of small events grow ten times past its budget.
 */
const EVENT_OVERHEAD_BYTES = 600;

export interface QueuedRecord {
  offset: string;
  bytes: number;
  events: ChangeEvent[];
}

export class StreamQueue {
  readonly items: QueuedEvent[] = [];
  /** Memory held, estimated (record bytes plus a per-event overhead), for backpressure. */
  bytes = 0;
  paused = false;
  /** Next offset expected from Kafka (null until the first record). */
  private next: bigint | null = null;
  private readonly assembler: PieceAssembler;
  private firstPieceOffset: string | null = null;
  private pieceBytes = 0;
  /** Bytes of the records that each queued item closes (released when the item is consumed). */
  private readonly itemBytes: number[] = [];

  constructor(
    readonly topic: string,
    readonly partition: number,
    onDiscard: (reason: string, pieces: number) => void,
  ) {
    this.assembler = new PieceAssembler({ onDiscard: (reason, n) => onDiscard(reason, n) });
  }

  /** Adds fetched records; returns how many were new and how many were read again. */
  push(records: readonly QueuedRecord[]): { accepted: number; reread: number } {
    let accepted = 0;
    let reread = 0;
    for (const r of records) {
      const off = BigInt(r.offset);
      if (this.next !== null && off < this.next) {
        reread++;
        continue;
      }
      this.next = off + 1n;
      accepted++;
      // the record's bytes are charged to the first event it completes (or to the pieces held)
      let bytes = r.bytes;
      for (const ev of r.events) {
        const piece = 'piece' in ev ? ev.piece : null;
        if (piece && piece.index === 0) this.firstPieceOffset = r.offset;
        const whole = this.assembler.push(ev);
        if (!whole) continue;
        const offset = whole === ev ? r.offset : (this.firstPieceOffset ?? r.offset);
        let charge = bytes + EVENT_OVERHEAD_BYTES;
        if (whole !== ev) {
          this.firstPieceOffset = null;
          charge += this.pieceBytes;
          this.bytes -= this.pieceBytes;
          this.pieceBytes = 0;
        }
        this.items.push({ event: whole, offset });
        this.itemBytes.push(charge);
        this.bytes += charge;
        bytes = 0;
      }
      if (bytes > 0 && this.assembler.pending > 0) {
        this.pieceBytes += bytes;
        this.bytes += bytes;
      }
    }
    return { accepted, reread };
  }

  /** Drops the first `n` items (applied). */
  consume(n: number): void {
    if (n <= 0) return;
    this.items.splice(0, n);
    for (const b of this.itemBytes.splice(0, n)) this.bytes -= b;
    if (this.items.length === 0) this.bytes = this.pieceBytes;
  }

  /** Where reading must resume if this process stopped now: the first record not wholly applied. */
  commitOffset(): string | null {
    if (this.items.length > 0) return this.items[0].offset;
    if (this.firstPieceOffset !== null) return this.firstPieceOffset;
    return this.next === null ? null : this.next.toString();
  }
}
