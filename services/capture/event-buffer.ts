/**
 * The capture's event buffer: change events in, Kafka records out. Each event is encoded at once
 * into the open record of its (db, partition) (`RecordPacker`); a record that fills up is handed
 * to the sink at once, a flush seals the open ones too. It bounds what waits for Kafka by bytes
 * (`maxInflightBytes`), times the flushes (after each burst while streaming, on the capture's
 * timer) and, once everything handed over before a streaming flush is acknowledged, records the
 * durable position and confirms it to the link.
 *
 * Why a file of its own: the snapshot source and the stream source (snapshot-source.ts,
 * stream-source.ts) both make events and neither cares how they become records or when they are
 * durable; this is the one place that knows. What it reads of the rest of the capture comes
 * through `EventBufferContext`.
 */
import type { Logger } from '../common/log.js';
import type { ChangeEvent } from '../events/model.js';
import type { RecordPacker, SealedRecord } from '../events/split.js';
import type { ReplicaLink } from '../replication/link/index.js';
import type { CaptureOptions, CaptureStats, UnitEnd, Work } from './capture-types.js';
import { collectIfIdle, noteActivity, paceExternal } from './idle-gc.js';

/**
 * Events per Kafka record at most, in a snapshot. An applier decodes a whole record at a time and
 * keeps its events until they are written: records of thousands of small keys (1 MiB holds
 * ~8,000) kept that many objects alive across young-generation collections, which then copied and
 * promoted them (a third of the applier's CPU in a full sync). A thousand keeps a record's
 * overhead (~30 bytes, and its handling in every stage) negligible: with 500 a 1M-key full sync
 * took 0.5–1.5 s longer and both services more CPU (three interleaved pairs).
 */
const SNAPSHOT_EVENTS_PER_RECORD = 1000;

/**
 * Events per Kafka record at most, in the stream. Under a steady load a record leaves when full or
 * at the next flush, whichever comes first, and a flush waits for Kafka's acks of the last: at
 * 100,000 SETs/s (25,000 a second per partition) records filled to 1,000 events, 40 ms of a
 * partition's traffic, before they left. With 500 the lag's median went from 42–46 ms to 27–33 ms
 * and its p99 from 68–87 ms to 57–71 ms (three interleaved rounds; 250 gained little more).
 */
export const STREAM_EVENTS_PER_RECORD = 500;

/** What the event buffer reads of the capture; one object made with the capture. */
export interface EventBufferContext {
  readonly opts: Pick<CaptureOptions, 'sink' | 'maxInflightBytes'>;
  readonly stats: Pick<CaptureStats, 'eventsProduced' | 'durableOffset' | 'epoch' | 'replid'>;
  readonly log: Logger;
  /**
   * True while a snapshot is being captured (snapshot-source.ts): its records leave when full, as
   * bulk, with no timer flush, and no position is recorded until its end.
   */
  snapshotCapturing(): boolean;
  /** Where the last unit produced ends (stream-source.ts): the position a streaming flush records. */
  lastUnitEnd(): UnitEnd | null;
  /** The current replication link, if any: its replication id goes into the position; durable offsets are confirmed to it. */
  link(): Pick<ReplicaLink, 'replicationId' | 'confirm'> | null;
  /** The capture's serial queue: a flush takes its turn behind the link's work. */
  enqueue(work: Work): Promise<void>;
  failed(): boolean;
  stopping(): boolean;
  /** A send failed: the capture fails. */
  fail(err: unknown): void;
}

/** One (db, partition) of the output: its open record and the records sealed, not handed over yet. */
interface Target {
  db: number;
  partition: number;
  packer: RecordPacker;
  sealed: SealedRecord[];
}

export class EventBuffer {
  private readonly ctx: EventBufferContext;
  /** One open record per (db, partition), by `db * 2^20 + partition`. */
  private targets = new Map<number, Target>();
  /** Records handed to the sink, not acknowledged yet: their bytes, and the sends. */
  private inflightBytes = 0;
  private readonly outstanding = new Set<Promise<void>>();
  private inflightWaiters: Array<() => void> = [];
  private readonly maxInflightBytes: number;
  /** The encoder, loaded in the background (capture.ts); set by `useEncoder` before any event. */
  private packerClass: typeof RecordPacker | null = null;
  /** Set by `useEncoder` (the default comes with the encoder module). */
  private maxRecordBytes = 0;
  private ticks = 0;
  /**
   * Events not encoded yet, behind the pieces of a huge command (see `buffer`), in order; while it
   * holds anything, every new event joins it and no position is recorded.
   */
  private backlog: Array<{ t: Target; events: ChangeEvent[]; next: number }> = [];
  private draining: Promise<void> | null = null;
  private flushScheduled = false;
  private lastPositionWriteMs = 0;

  constructor(ctx: EventBufferContext) {
    this.ctx = ctx;
    this.maxInflightBytes = ctx.opts.maxInflightBytes ?? 8 * 1024 * 1024;
  }

  /** The encoder module once loaded, and the record bound (capture.ts `start`). */
  useEncoder(packerClass: typeof RecordPacker, maxRecordBytes: number): void {
    this.packerClass = packerClass;
    this.maxRecordBytes = maxRecordBytes;
  }

  private target(db: number, partition: number): Target {
    const id = db * 1_048_576 + partition;
    let t = this.targets.get(id);
    if (!t) {
      t = { db, partition, packer: new (this.packerClass as typeof RecordPacker)(this.maxRecordBytes, { maxEvents: SNAPSHOT_EVENTS_PER_RECORD }), sealed: [] };
      this.targets.set(id, t);
    }
    return t;
  }

  /**
   * Encodes `event` into its partition's open record; a record that fills up leaves at once.
   *
   * A command too big for one record is encoded piece by piece, each record handed to Kafka as it
   * is made, and no more than `maxInflightBytes` wait for acks: the rest waits in `backlog` (with
   * every event after it) and the link delivers no further unit until it is encoded
   * (`drainBacklog`). Encoded at once, a 100 MB SET was held twice, as its argument and as its
   * records; now its argument and a few records. The position is not recorded while the backlog
   * holds anything, so a restart never resumes past a command not wholly in Kafka.
   */
  buffer(db: number, partition: number, event: ChangeEvent): void {
    const t = this.target(db, partition);
    const snapshot = this.ctx.snapshotCapturing();
    t.packer.maxEvents = snapshot ? SNAPSHOT_EVENTS_PER_RECORD : STREAM_EVENTS_PER_RECORD;
    if (this.backlog.length > 0) this.backlog.push({ t, events: [event], next: 0 });
    else {
      let pieces: ChangeEvent[] | null = null;
      if (event.kind === 'command') pieces = t.packer.pushOrPieces(event, t.sealed);
      else t.packer.push(event, t.sealed);
      if (pieces === null) {
        if (t.sealed.length > 0) this.dispatch(t);
      } else {
        this.backlog.push({ t, events: pieces, next: 0 });
        this.packBacklog();
      }
    }
    if (!snapshot) this.scheduleFlush();
  }

  /** True while events wait behind the pieces of a huge command (see `buffer`). */
  get hasBacklog(): boolean {
    return this.backlog.length > 0;
  }

  /** Encodes backlog events while fewer than `maxInflightBytes` of records wait for Kafka. */
  private packBacklog(): void {
    while (this.backlog.length > 0 && this.inflightBytes <= this.maxInflightBytes) {
      const b = this.backlog[0];
      b.t.packer.push(b.events[b.next++], b.t.sealed);
      if (b.t.sealed.length > 0) this.dispatch(b.t);
      if (b.next === b.events.length) this.backlog.shift();
    }
  }

  /** Resolves once the backlog is encoded (one drain at a time, whichever link asks). */
  drainBacklog(): Promise<void> {
    this.draining ??= (async () => {
      try {
        while (this.backlog.length > 0) {
          await this.inflightBelow(this.maxInflightBytes / 2);
          if (this.ctx.failed() || this.ctx.stopping()) {
            // nothing of it is durable (no position was recorded past it): a restart sends it again
            this.backlog = [];
            return;
          }
          this.packBacklog();
        }
        if (!this.ctx.snapshotCapturing()) this.scheduleFlush();
      } finally {
        this.draining = null;
      }
    })();
    return this.draining;
  }

  /** Hands the target's sealed records to the sink (in order per partition); their bytes are in flight until acked. */
  private dispatch(t: Target): void {
    const records = t.sealed;
    if (records.length === 0) return;
    t.sealed = [];
    let bytes = 0;
    let count = 0;
    for (const r of records) {
      bytes += r.body.length;
      count += r.count;
    }
    this.inflightBytes += bytes;
    noteActivity(bytes);
    const done = (): void => {
      this.inflightBytes -= bytes;
      this.outstanding.delete(sent);
      if (this.inflightWaiters.length > 0) for (const w of this.inflightWaiters.splice(0)) w();
    };
    const sent: Promise<void> = this.ctx.opts.sink.sendRecords(t.db, t.partition, records, { bulk: this.ctx.snapshotCapturing() }).then(
      () => {
        this.ctx.stats.eventsProduced += count;
        done();
      },
      (err: unknown) => {
        done();
        throw err;
      },
    );
    this.outstanding.add(sent);
    sent.catch((err: unknown) => this.ctx.fail(err));
  }

  /** Resolves once at most `bytes` of records wait for Kafka's acks. */
  private async inflightBelow(bytes: number): Promise<void> {
    while (this.inflightBytes > bytes && !this.ctx.failed()) await new Promise<void>((r) => this.inflightWaiters.push(r));
  }

  /**
   * A snapshot's backpressure: null while at most `maxInflightBytes` of records wait for Kafka's
   * acks, else resolves once at most half of that does.
   */
  snapshotBackpressure(): Promise<void> | null {
    return this.inflightBytes > this.maxInflightBytes ? this.inflightBelow(this.maxInflightBytes / 2) : null;
  }

  /** While streaming, events leave as soon as the previous flush is done (lag), not on a timer. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      void this.ctx.enqueue(async () => {
        this.flushScheduled = false;
        await this.flush();
      });
    });
  }

  /** The capture's flush timer (every `flushIntervalMs`). */
  tick(): void {
    // During a snapshot records leave when full (and all at its end): no timer flush.
    if (!this.ctx.snapshotCapturing()) void this.ctx.enqueue(() => this.flush());
    // Every second: a record buffer grown by a burst is let go (it grows again when needed), and
    // once a burst is over its garbage is collected (idle-gc.ts).
    if (++this.ticks % 50 === 0) {
      this.trimRecords();
      if (collectIfIdle()) this.ctx.log.debug('burst over: memory collected');
    }
  }

  /** Lets go of the record buffers grown by a burst (they grow again when needed). */
  trimRecords(): void {
    for (const t of this.targets.values()) t.packer.trim();
  }

  /** Seals every open record and waits until Kafka acknowledged everything handed over so far. */
  async flushEvents(): Promise<void> {
    for (const t of this.targets.values()) {
      if (t.packer.openCount > 0) t.packer.seal(t.sealed);
      this.dispatch(t);
    }
    if (this.outstanding.size > 0) await Promise.all([...this.outstanding]);
  }

  /**
   * Flushes the events; while streaming, then records the durable position and confirms it to the
   * link (`force`: even within 100 ms of the last one).
   */
  async flush(force = false): Promise<void> {
    if (this.ctx.snapshotCapturing()) {
      // During a snapshot only events are flushed; the position moves once the snapshot is complete.
      await this.flushEvents();
      return;
    }
    const end = this.ctx.lastUnitEnd();
    // events still in the backlog are not handed over by this flush, so not durable after it: no
    // position past them (a flush after the drain records it)
    const incomplete = this.backlog.length > 0;
    await this.flushEvents();
    paceExternal();
    if (incomplete) return;
    // The durable position is recorded at most every 100 ms (the timer flush catches up): it only
    // bounds what a restart re-sends, and duplicates are recognised downstream.
    const stats = this.ctx.stats;
    if (end && end.offset > stats.durableOffset && (force || Date.now() - this.lastPositionWriteMs >= 100)) {
      this.lastPositionWriteMs = Date.now();
      await this.ctx.opts.sink.writePosition({
        epoch: stats.epoch, replid: this.ctx.link()?.replicationId ?? stats.replid ?? '', offset: end.offset, db: end.db,
        state: 'streaming', updatedAt: Date.now(),
      });
      stats.durableOffset = end.offset;
      this.ctx.link()?.confirm(end.offset);
    }
  }
}
