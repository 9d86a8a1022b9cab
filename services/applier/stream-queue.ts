/**
 * The records of one partition fetched and not applied yet, as whole events.
 *
 * The consumer hands over what it fetches and moves on; the applier holds it here until the plan
 * (barrier.ts) takes it, instead of rewinding the partition when something must wait: a record is
 * read from Kafka once. Records delivered again (after a rebalance, kafkajs reads from the
 * committed offset) are recognised by offset and dropped, and counted.
 *
 * Events split into record pieces (services/events/split.ts) are rebuilt here, and only here; an
 * event enters the queue whole, with the offset of the record holding its first piece, and no
 * offset commit passes that record while its series is incomplete. A piece read without the pieces
 * before it (reading started inside a series) is kept aside as an *orphan*, never dropped: the
 * applier compares it with the destination's position and either knows it applied (a replay) or
 * reads the partition again from the series' first record (`seriesStartOffset`).
 *
 * Records are kept as they came from Kafka and decoded only when the plan is about to look at them
 * (`fill`), a few thousand events at a time: what a partition holds while it waits is its record
 * bytes, not a heap of event objects (which, living long, V8 promoted and collected at length).
 *
 * Backpressure counts whole events only: a series being rebuilt must be read to its end to make
 * progress, so its pieces never pause the partition (a 22 MB command held back by a 4 MiB budget
 * would wait forever); its memory is bounded by the event's own size.
 */
import { fullCollection, HeapBudget } from '../common/heap-budget.js';
import type { ChangeEvent, SourcePosition } from '../events/model.js';
import { PieceAssembler, seriesPosition } from '../events/split.js';
import { setResumeToken } from '../destination/position.js';
import type { QueuedEvent } from './barrier.js';

/**
 * What a decoded event costs in memory beyond its record bytes (objects, Buffer headers): small
 * keys are ~60 bytes on the wire and several times that decoded, so bytes alone would let a
 * queue of small events grow ten times past its budget.
 */
const EVENT_OVERHEAD_BYTES = 600;

/**
 * While a series is rebuilt, a young-generation collection (a scavenge) after every piece
 * (`SERIES_SCAVENGE_BYTES`: pieces fill records of up to 900 KB). Why: each piece of a 1,000,000-field HSET decodes into ~80,000
 * Buffer views that are copied into the command being rebuilt and die at once, but a scavenge
 * falling while a piece is decoded finds them alive; those that outlive two are promoted, and the
 * old generation grew by ~100 MB between full collections (a heap snapshot: 57 MB live at 140 MB
 * used; the applier's RSS went from 200 to 320 MB and back, four times over one HSET). Collected
 * young they cost nothing more (a scavenge of a mostly dead young generation is well under a
 * millisecond).
 */
const SERIES_SCAVENGE_BYTES = 512 * 1024;
/**
 * And the applier's own memory check (applier.ts, against its default budget), which runs between
 * plans and so not while a series is read: what the scavenges miss (pieces come faster than
 * they are rebuilt; a 1,000,000-field HSET still took the RSS from 180 to 300+ MB in under a
 * second) is collected once the budget is passed.
 */
const seriesHeap = new HeapBudget(256 * 1024 * 1024);
let scavenge: ((options: { type: 'minor' }) => void) | null | undefined;
function collectYoung(): void {
  scavenge ??= fullCollection() as ((options: { type: 'minor' }) => void) | null;
  scavenge?.({ type: 'minor' });
}

export interface QueuedRecord {
  offset: string;
  bytes: number;
  /** Decoded events (empty until decoded when `value` is set). */
  events: ChangeEvent[];
  /** The undecoded record value (null: `events` is all there is). */
  value?: Buffer | null;
}

/** Decodes a record's value into its events. */
export type RecordDecoder = (record: QueuedRecord) => Promise<ChangeEvent[]>;

/** A piece read without the pieces before it. */
export interface OrphanPiece {
  /** Offset of the record holding it. */
  offset: string;
  /** Its index in the series. */
  index: number;
  /** Position of the whole event (of its first piece). */
  eventPos: SourcePosition;
}

/**
 * Offset of the record holding a series' first piece, from the record holding its piece `index`:
 * capture writes a series' pieces into consecutive records of one partition, one piece per record
 * (each piece is cut to fill a record alone).
 */
export function seriesStartOffset(o: OrphanPiece): string {
  const start = BigInt(o.offset) - BigInt(o.index);
  return (start < 0n ? 0n : start).toString();
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
  /** Bytes of pieces taken since the last scavenge (see `SERIES_SCAVENGE_BYTES`). */
  private sinceScavenge = 0;
  /** Pieces read without their beginning, for the applier to settle (see the header). */
  readonly orphans: OrphanPiece[] = [];
  /** The record and event the assembler is given (two fields, not an object made per event). */
  private orphanInOffset = '';
  private orphanInEvent: ChangeEvent | null = null;
  /** Bytes of the records that each queued item closes (released when the item is consumed). */
  private readonly itemBytes: number[] = [];
  /** Records received and not decoded yet, in offset order. */
  private readonly undecoded: QueuedRecord[] = [];

  constructor(
    readonly topic: string,
    readonly partition: number,
    onDiscard: (reason: string, pieces: number) => void,
  ) {
    this.assembler = new PieceAssembler({
      onDiscard: (reason, n) => {
        const event = this.orphanInEvent;
        if (reason === 'piece without its beginning' && event) {
          const piece = 'piece' in event ? event.piece : null;
          const index = piece?.index ?? 0;
          this.orphans.push({ offset: this.orphanInOffset, index, eventPos: seriesPosition(event, index) });
        } else onDiscard(reason, n); // a series cut short: capture re-sent the event whole later
      },
    });
  }

  /** Bytes of whole events: what backpressure counts (pieces being rebuilt are not paused on). */
  get wholeBytes(): number {
    return this.bytes - this.pieceBytes;
  }

  /** Adds fetched records (not decoded yet); returns how many were new and how many were read again. */
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
      this.undecoded.push(r);
      this.bytes += r.bytes;
    }
    return { accepted, reread };
  }

  /** Reading starts at `offset` (the records before it are applied): nothing queued yet. */
  startAt(offset: string): void {
    const at = BigInt(offset);
    if (this.next === null || this.next < at) this.next = at;
  }

  /** The offset after the last record received (null before the first). */
  get nextOffset(): string | null {
    return this.next === null ? null : this.next.toString();
  }

  /** Records waiting to be decoded. */
  get undecodedRecords(): number {
    return this.undecoded.length;
  }

  /**
   * Decodes records until `items` holds at least `minItems` events (or nothing is left), rebuilding
   * split events. `onDecoded` sees each record's events as they are decoded.
   */
  async fill(minItems: number, decode: RecordDecoder, onDecoded?: (r: QueuedRecord, events: ChangeEvent[]) => void): Promise<void> {
    while (this.items.length < minItems && this.undecoded.length > 0) {
      const r = this.undecoded[0];
      const events = r.value ? await decode(r) : r.events;
      this.undecoded.shift();
      this.bytes -= r.bytes;
      onDecoded?.(r, events);
      this.take(r, events);
    }
  }

  private take(r: QueuedRecord, events: ChangeEvent[]): void {
    {
      // the record's bytes are charged to the first event it completes (or to the pieces held)
      let bytes = r.bytes;
      for (const ev of events) {
        const piece = 'piece' in ev ? ev.piece : null;
        if (piece && piece.index === 0) this.firstPieceOffset = r.offset;
        this.orphanInOffset = r.offset;
        this.orphanInEvent = ev;
        const whole = this.assembler.push(ev);
        this.orphanInEvent = null;
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
      // The record's last event, whole and ending no series: once the destination holds it,
      // reading may resume at the next record (see `resumeOffset`).
      const last = events.length > 0 ? events[events.length - 1] : null;
      if (last && !('piece' in last && last.piece) && this.assembler.pending === 0) setResumeToken(last.pos, (BigInt(r.offset) + 1n).toString());
      if (bytes > 0 && this.assembler.pending > 0) {
        this.pieceBytes += bytes;
        this.bytes += bytes;
        this.sinceScavenge += bytes;
        if (this.sinceScavenge >= SERIES_SCAVENGE_BYTES) {
          this.sinceScavenge = 0;
          if (!seriesHeap.check()) collectYoung();
        }
      }
    }
  }

  /** Drops the first `n` items (applied). */
  consume(n: number): void {
    if (n <= 0) return;
    this.items.splice(0, n);
    for (const b of this.itemBytes.splice(0, n)) this.bytes -= b;
    if (this.items.length === 0) this.bytes = this.pieceBytes + this.undecoded.reduce((n, r) => n + r.bytes, 0);
  }

  /** Where reading must resume if this process stopped now: the first record not wholly applied. */
  commitOffset(): string | null {
    let at: string | null = null;
    const lower = (o: string) => {
      if (at === null || BigInt(o) < BigInt(at)) at = o;
    };
    if (this.items.length > 0) lower(this.items[0].offset);
    if (this.firstPieceOffset !== null) lower(this.firstPieceOffset);
    if (this.orphans.length > 0) lower(seriesStartOffset(this.orphans[0]));
    if (this.undecoded.length > 0) lower(this.undecoded[0].offset);
    if (at !== null) return at;
    return this.next === null ? null : this.next.toString();
  }
}
