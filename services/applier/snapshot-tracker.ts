/**
 * What the applier service reports of a full sync (status, progress, task state), from the events
 * it decodes and the offsets it commits. Kept apart from the service: it is pure bookkeeping over
 * batches and offsets.
 */
import type { DecodedBatch, TopicPartitionOffset } from '../transport/consumer.js';

/**
 * The full sync as this applier sees it: it is initializing from the first snapshot event of a
 * partition until the snapshot end of every partition that had one is written (committed), and
 * counts the snapshot keys and record bytes written, from the offsets the applier commits.
 */
export class SnapshotTracker {
  /** Partitions in a snapshot: from a snapshot-begin or -key until their snapshot-end is written. */
  private readonly open = new Set<string>();
  /** Per partition, the records with snapshot events not written yet. */
  private readonly pending = new Map<string, Array<{ offset: number; keys: number; bytes: number; end: boolean }>>();
  /**
   * Per partition, the Kafka offsets of its snapshot: first record, next to write, and the last
   * (the snapshot-end's, or the high watermark while it has not been read): with no total of keys
   * before the snapshot ends, records are what progress and ETA are measured in.
   */
  private readonly spans = new Map<string, { start: number; next: number; end: number; ended: boolean }>();
  keys = 0;
  bytes = 0;
  active = false;

  constructor(private readonly onStart: () => void, private readonly onEnd: () => void) {}

  /** A batch handed to the applier: true when it held snapshot events. */
  received(batch: DecodedBatch): boolean {
    const id = `${batch.topic}:${batch.partition}`;
    let any = false;
    for (const r of batch.records) {
      let keys = 0;
      let snap = false;
      let end = false;
      for (const e of r.events) {
        if (e.kind === 'snapshot-begin' || e.kind === 'snapshot-key') {
          if (!this.active) this.start();
          this.open.add(id);
          snap = true;
          if (e.kind === 'snapshot-key' && !e.append && (e.piece === null || e.piece.last)) keys++;
        } else if (e.kind === 'snapshot-end') {
          snap = end = true;
        }
      }
      if (!snap || !this.active) continue;
      any = true;
      const offset = Number(r.offset);
      let span = this.spans.get(id);
      if (!span) this.spans.set(id, (span = { start: offset, next: offset, end: offset + 1, ended: false }));
      if (!span.ended) span.end = Math.max(span.end, end ? offset + 1 : Number(batch.highWatermark));
      if (end) span.ended = true;
      let list = this.pending.get(id);
      if (!list) this.pending.set(id, (list = []));
      list.push({ offset: Number(r.offset), keys, bytes: r.bytes, end });
    }
    return any;
  }

  /**
   * The partitions this process holds after a (re)join. A snapshot partition it gave up is the new
   * holder's to write and to track: kept here, it would never see its end, and the applier would
   * say it is initializing (and hold its warm-up) for good.
   */
  assigned(assignment: ReadonlyArray<{ topic: string; partitions: readonly number[] }>): void {
    const mine = new Set(assignment.flatMap((a) => a.partitions.map((p) => `${a.topic}:${p}`)));
    for (const id of [...this.open]) if (!mine.has(id)) this.open.delete(id);
    for (const id of [...this.pending.keys()]) if (!mine.has(id)) this.pending.delete(id);
    for (const id of [...this.spans.keys()]) if (!mine.has(id)) this.spans.delete(id);
    this.endIfDone();
  }

  /** Offsets committed: everything before them is written at the destination. */
  committed(offsets: TopicPartitionOffset[]): void {
    for (const o of offsets) {
      const id = `${o.topic}:${o.partition}`;
      const list = this.pending.get(id);
      if (!list) continue;
      const next = Number(o.offset);
      const span = this.spans.get(id);
      if (span) span.next = Math.min(Math.max(span.next, next), span.end);
      while (list.length > 0 && list[0].offset < next) {
        const r = list.shift()!;
        this.keys += r.keys;
        this.bytes += r.bytes;
        if (r.end) this.open.delete(id);
      }
    }
    this.endIfDone();
  }

  private endIfDone(): void {
    if (this.active && this.open.size === 0) {
      this.active = false;
      this.onEnd();
    }
  }

  /** Snapshot records written, and known to hold the snapshot (grows while capture still sends it). */
  records(): { done: number; total: number } {
    let done = 0;
    let total = 0;
    for (const s of this.spans.values()) {
      done += s.next - s.start;
      total += s.end - s.start;
    }
    return { done, total };
  }

  private start(): void {
    this.active = true;
    this.keys = 0;
    this.bytes = 0;
    this.pending.clear();
    this.spans.clear();
    this.onStart();
  }
}
