/**
 * The capture pipeline: replica link → RDB parser / command units → change events → event sink.
 *
 * This file holds the pipeline's public API and lifecycle (start, the link and its events, moves,
 * park, hold, stop, failure), its serial queue and the slot hand-off, and composes three parts:
 * the snapshot source (snapshot-source.ts: RDB → snapshot events), the stream source
 * (stream-source.ts: command units → command and heartbeat events) and the event buffer
 * (event-buffer.ts: events → Kafka records, bytes in flight, flushes, the durable position).
 *
 * Order and durability
 * - Every link event goes through one serial queue, so events reach the sink in source order.
 * - Events are encoded as soon as they are made, into one open Kafka record per (db, partition)
 *   (`RecordPacker`): what waits for Kafka is records' bytes, not event objects. A record that
 *   fills up is handed to the sink at once; a flush (after each command burst, at most every
 *   `flushIntervalMs`) seals the open records too. Kafka's acks come back per record.
 * - Memory is bounded by bytes: during a snapshot, at most `maxInflightBytes` of records may
 *   wait for Kafka's acks before the RDB stream is paused (the link then stops reading the socket
 *   once `maxBufferedBytes` of RDB are queued); during streaming, the link pauses the socket once
 *   `maxUnconfirmedBytes` of stream are not confirmed durable.
 * - A streaming flush waits for Kafka's acks of everything handed over before it, then records
 *   the durable position (replid, offset, db, epoch) in the positions topic and confirms the
 *   offset to the link, which only then ACKs it to the source.
 * - A full sync starts a new epoch. Its start is recorded (state `snapshot`) before any of its
 *   events are produced: a capture restarted in the middle of a snapshot sees that and asks for a
 *   new full sync (a new epoch), instead of continuing a stream whose snapshot is incomplete.
 * - After a restart the capture resumes by PSYNC from the durable position; events produced after
 *   that position are produced again with the same positions, and appliers skip them.
 */
import { EventEmitter } from 'node:events';
import { ReplistreamError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Heartbeat, SlotHandOff, SourcePosition } from '../events/model.js';
import { ReplicaLink, type ReplicaPosition } from '../replication/link/index.js';
import type { CaptureOptions, CaptureStats, SourceLinkStatus, Work } from './capture-types.js';
import { EventBuffer } from './event-buffer.js';
import { OwnKeys } from './own-keys.js';
import { SnapshotSource } from './snapshot-source.js';
import { StreamSource } from './stream-source.js';

export type { CaptureOptions, CapturePosition, CaptureStats, EventSink, SourceLinkStatus } from './capture-types.js';

/**
 * The RDB parser and the event encoder are loaded in the background (module loading is most of
 * a capture's start-up): the link does not need them to connect, and `start` waits for them
 * while it reads the stored position anyway. (The parts import them as types only, so that
 * importing them does not load these modules up front.)
 */
const heavy = Promise.all([import('../replication/rdb/index.js'), import('../events/split.js')]).then(([rdb, split]) => ({
  RdbParser: rdb.RdbParser,
  RecordPacker: split.RecordPacker,
  DEFAULT_MAX_RECORD_BYTES: split.DEFAULT_MAX_RECORD_BYTES,
}));
heavy.catch(() => undefined); // awaited in start()

/**
 * `seq` of the position-only events of a slot hand-off (the old owner's marker, the new owner's
 * hand-off): above any seq a unit, a cut unit or a snapshot uses at one offset, plus the time in
 * ms so that two hand-offs at one offset (no write between them) still grow. Under avsc's 2^53.
 */
const HANDOFF_SEQ_BASE = 2 ** 52;

export class CaptureService extends EventEmitter {
  private readonly opts: CaptureOptions;
  private readonly log: Logger;
  private link: ReplicaLink | null = null;
  private queue: Promise<void> = Promise.resolve();
  /** First partition of this capture's range. */
  private readonly base: number;
  private readonly events: EventBuffer;
  private readonly snapshot: SnapshotSource;
  private readonly stream: StreamSource;
  private stopping = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private failed: ReplistreamError | null = null;
  private held = false;
  /** The last position given to a marker or a hand-off: the next one is past it. */
  private lastHandOffPos: { offset: number; seq: number } = { offset: -1, seq: 0 };
  readonly stats: CaptureStats = {
    state: 'starting', epoch: 0, replid: null, sourceOffset: 0, durableOffset: 0, snapshotKeys: 0, snapshotBytes: 0, snapshotBytesTotal: null,
    commands: 0, eventsProduced: 0, fullSyncs: 0, continues: 0, lastHeartbeatMs: null, error: null, linkStartedAt: null,
    sourceLink: { state: 'connected', since: null, retries: 0, reconnects: 0, lastError: null },
  };

  constructor(opts: CaptureOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    this.base = opts.partitionBase ?? 0;
    // replistream's own keys in the source (a cascade's middle server): neither sent in a snapshot nor forwarded from the stream
    const ownKeys = new OwnKeys([opts.heartbeatKey]);
    const { stats, log } = this;
    this.events = new EventBuffer({
      opts, stats, log,
      snapshotCapturing: () => this.snapshot.capturing,
      lastUnitEnd: () => this.stream.lastUnitEnd,
      link: () => this.link,
      enqueue: (work) => this.enqueue(work),
      failed: () => this.failed !== null,
      stopping: () => this.stopping,
      fail: (err) => this.fail(err),
    });
    this.snapshot = new SnapshotSource({
      opts, partitionBase: this.base, ownKeys, stats, log, events: this.events,
      newEpoch: () => this.stream.newEpoch(),
      linkDb: () => this.link?.position?.db ?? 0,
      emit: (event, info) => this.emit(event, info),
    });
    this.stream = new StreamSource({
      opts, partitionBase: this.base, ownKeys, stats, log, events: this.events,
      failed: () => this.failed !== null,
      link: () => this.link,
      foreignWrite: () => this.emit('foreign-write'),
    });
  }

  async start(): Promise<void> {
    const [last, loaded] = await Promise.all([this.opts.sink.readPosition(), heavy]);
    this.events.useEncoder(loaded.RecordPacker, this.opts.maxRecordBytes ?? loaded.DEFAULT_MAX_RECORD_BYTES);
    this.snapshot.useParser(loaded.RdbParser);
    let start = null;
    if (last) {
      this.stats.epoch = last.epoch;
      if (last.state === 'streaming' && !this.opts.forceFull) {
        start = { replid: last.replid, offset: last.offset, db: last.db };
        this.stats.replid = last.replid;
        this.stats.durableOffset = last.offset;
        this.log.info({ epoch: last.epoch, replid: last.replid, offset: last.offset }, 'resuming from the durable position');
      } else if (!this.opts.forceFull) {
        this.log.warn({ epoch: last.epoch }, 'the previous full sync did not complete: starting a new one');
      }
    }
    this.flushTimer = setInterval(() => this.events.tick(), this.opts.flushIntervalMs ?? 20);
    this.openLink(start);
  }

  private openLink(start: { replid: string; offset: number; db: number } | null): void {
    const link = new ReplicaLink({
      ...this.opts.link,
      start,
      manualConfirm: true,
      // Bytes of stream received but not yet durable in Kafka before the socket pauses: units are
      // encoded at once (about their wire size as records), the link keeps only their offsets;
      // the source buffers the rest (client-output-buffer-limit replica).
      maxUnconfirmedBytes: this.opts.maxUnconfirmedBytes ?? 16 * 1024 * 1024,
      // Snapshot bytes queued while the pipeline waits for Kafka (maxInflightBytes) before the
      // socket pauses: the source's transfer then proceeds at the pipeline's pace.
      maxBufferedBytes: this.opts.maxBufferedBytes ?? 4 * 1024 * 1024,
      logger: this.log,
      onRdbChunk: (chunk) => this.enqueue(() => this.snapshot.onRdbChunk(chunk)),
      onRdbEnd: () => this.enqueue(() => this.snapshot.onRdbEnd()),
      onRdbAbort: () => this.enqueue(async () => this.snapshot.abandon()),
      // the link delivers nothing more until a huge command's records are all made (see EventBuffer `buffer`)
      afterUnit: () => (this.events.hasBacklog ? this.events.drainBacklog() : undefined),
    });
    this.link = link;
    if (this.held) link.hold(true);
    this.stream.linkReopened();
    this.stats.linkStartedAt ??= Date.now();
    // the source answered PSYNC: the link is up (whether or not an outage preceded it)
    const connected = () => {
      if (this.link === link) Object.assign(this.stats.sourceLink, { state: 'connected', since: null, retries: 0, lastError: null });
    };
    link.on('fullresync', connected);
    link.on('continue', connected);
    link.on('fullresync', (info) => {
      this.stats.snapshotBytesTotal = null; // until the transfer's preamble announces it
      this.snapshot.fullResyncAnnounced();
      void this.enqueue(() => this.snapshot.onFullResync(info.replid, info.offset));
    });
    link.on('rdb-size', (info) => {
      if (this.link === link) this.stats.snapshotBytesTotal = info.bytes;
    });
    link.on('continue', (info) => {
      this.snapshot.streamContinued();
      this.stats.continues++;
      this.stats.replid = info.replid;
      // streaming from here, even before a first unit (a cluster master without writes)
      if (this.stats.state === 'starting') this.stats.state = 'synchronizing';
      this.log.info({ replid: info.replid, offset: info.offset }, 'source continued the stream (+CONTINUE)');
      this.emit('continue', info);
    });
    link.on('unit', (unit) => {
      if (this.link === link) this.stream.onUnit(unit);
    });
    link.on('error', (err) => this.log.warn({ err: err.message, retriable: err.retriable }, 'replication link error'));
    link.on('disconnected', ({ error }) => {
      if (this.link !== link) return;
      const h = link.health;
      Object.assign(this.stats.sourceLink, { state: 'disconnected', since: h.downSince, retries: h.retries, lastError: error.message });
    });
    link.on('reconnected', () => {
      if (this.link === link) this.stats.sourceLink.reconnects++;
    });
    link.on('disconnected', (info) => {
      if (this.link === link) this.emit('link-down', info); // a cluster capture looks for a new master
    });
    link.on('close', ({ error }) => {
      if (error && this.link === link) this.fail(error);
    });
    link.start();
  }

  /** The source moved (Sentinel's +switch-master): the replication link goes there now. */
  sourceMoved(addr: { host: string; port: number }): void {
    this.link?.moveTo(addr);
  }

  /**
   * Drops the current stream and asks the source for a new full sync (a new snapshot). Used by a
   * cluster capture when another master had to resync: all masters then join the new epoch.
   */
  async forceFullSync(): Promise<void> {
    const old = this.link;
    this.link = null;
    await old?.stop();
    await this.enqueue(async () => {
      await this.events.flush();
      this.snapshot.abandon();
    });
    if (!this.failed && this.flushTimer && !this.parked) this.openLink(null);
  }

  /** True while the link is stopped with the pipeline kept (park). */
  private parked = false;
  /** Where a parked link stood: `moveLink(…, true)` continues from there. */
  private parkedAt: ReplicaPosition | null = null;

  /**
   * Stops the link and keeps the pipeline: a cluster shard left without slots, whose master may be
   * removed next, has nothing more to send (cluster-follow.ts). `moveLink` opens a link again.
   */
  async park(): Promise<void> {
    this.parked = true;
    const old = this.link;
    this.parkedAt = old?.position ?? this.parkedAt;
    this.link = null;
    await old?.stop();
    // not an outage: nothing is expected from this server any more
    Object.assign(this.stats.sourceLink, { state: 'connected', since: null, retries: 0, lastError: null });
    await this.enqueue(() => this.events.flush());
  }

  /**
   * Points the link at another server of the same replication history (cluster.ts: a replica
   * promoted in place of this shard's master). `resume`: PSYNC from where the link stands, which
   * the promoted server accepts (+CONTINUE) through its `master_replid2`; units received after
   * the durable position come again with the same positions and appliers skip them. Without
   * `resume`, a new full sync (and, in a cluster, a new epoch for every shard).
   */
  async moveLink(url: string, resume: boolean): Promise<void> {
    const old = this.link;
    const start = resume ? (old?.position ?? this.parkedAt) : null;
    this.parkedAt = null;
    this.link = null;
    await old?.stop();
    if (!start) {
      await this.enqueue(async () => {
        await this.events.flush();
        this.snapshot.abandon();
      });
    }
    this.opts.link = { ...this.opts.link, url };
    this.parked = false;
    if (!this.failed && this.flushTimer) this.openLink(start);
  }

  /** The link's replication id and the end of the last unit produced: what a failover must still hold. */
  streamPoint(): { replid: string | null; producedOffset: number } {
    return { replid: this.link?.replicationId ?? this.stats.replid, producedOffset: this.stats.sourceOffset };
  }

  // ----- slot hand-off (a cluster source's slots moved; cluster-follow.ts) ------------------------

  /** Holds the stream from now on, until `handOff` (a hand-off to this shard is about to start). */
  beginHold(): void {
    this.stream.beginHold();
  }

  /** True while units wait for a hand-off. */
  get holding(): boolean {
    return this.stream.holding;
  }

  /** A snapshot is on its way or being captured (the source answered FULLRESYNC; its end not yet produced). */
  get snapshotUnderWay(): boolean {
    return this.snapshot.pending && !this.failed && !this.stopping;
  }

  /** Streaming (no snapshot under way): a hand-off can be put in its partitions. */
  get streaming(): boolean {
    return !this.failed && !this.snapshot.capturing && this.stats.state === 'synchronizing';
  }

  private handOffPos(offset: number): SourcePosition {
    const last = this.lastHandOffPos;
    const o = Math.max(offset, last.offset);
    let seq = HANDOFF_SEQ_BASE + Date.now();
    if (o === last.offset && seq <= last.seq) seq = last.seq + 1;
    this.lastHandOffPos = { offset: o, seq };
    return { epoch: this.stats.epoch, offset: o, seq, replid: this.link?.replicationId ?? this.stats.replid ?? '' };
  }

  /**
   * The old owner's side of a hand-off: once the link has read the stream up to `atLeast` (the
   * source's offset after the slots left it), puts a position-only marker in every partition of
   * this shard, waits for Kafka's acks and records the durable position. Every write of this
   * shard to the moved slots is before the marker. Null when it cannot (no link, a snapshot under
   * way, this shard holding for a hand-off of its own, the offset not reached in `timeoutMs`).
   */
  async handOffMark(atLeast: number, timeoutMs: number): Promise<{ pos: SourcePosition; partitions: number[] } | null> {
    const link = this.link;
    const until = Date.now() + timeoutMs;
    while (link && this.link === link && (link.processedOffset ?? -1) < atLeast && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    let mark: { pos: SourcePosition; partitions: number[] } | null = null;
    await this.enqueue(async () => {
      const processed = link?.processedOffset ?? null;
      if (!link || this.link !== link || processed === null || processed < atLeast || this.stream.holding || !this.streaming) return;
      const pos = this.handOffPos(processed); // the link's processed offset is at or past the last unit's end
      const partitions: number[] = [];
      for (let p = 0; p < this.opts.partitions; p++) partitions.push(this.base + p);
      for (const db of this.opts.dbs) for (const p of partitions) this.events.buffer(db, p, { kind: 'heartbeat', pos, db, timeMs: 0 } satisfies Heartbeat);
      await this.events.flush(true);
      mark = { pos, partitions };
    });
    return mark;
  }

  /**
   * The new owner's side: puts a hand-off (wait until each of `after`'s partitions has applied its
   * position) in every partition of this shard, after everything produced so far, waits for
   * Kafka's acks, then lets the held units go, behind it.
   */
  async handOff(after: SlotHandOff['after']): Promise<void> {
    await this.enqueue(async () => {
      const pos = this.handOffPos(this.stream.lastUnitEnd?.offset ?? this.stats.durableOffset);
      for (const db of this.opts.dbs) {
        const event: SlotHandOff = { kind: 'slot-handoff', pos, db, after };
        for (let p = 0; p < this.opts.partitions; p++) this.events.buffer(db, this.base + p, event);
      }
      await this.events.flushEvents();
      const held = this.stream.endHold();
      this.log.info({ units: held.length, offset: pos.offset }, 'slot hand-off produced: the held writes follow it');
      for (const unit of held) this.stream.onUnit(unit);
    });
  }

  /** Operator pause: the link stops reading the source (it keeps the link and its position). */
  hold(on: boolean): void {
    this.held = on;
    this.link?.hold(on);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = null;
    await this.link?.stop();
    await this.enqueue(() => this.events.flush(true));
    await this.queue;
    if (this.stats.state !== 'failed') this.stats.state = 'stopped';
  }

  /** Resolves when the pipeline fails for good (for the service to exit non-zero). */
  failure(): Promise<ReplistreamError> {
    return new Promise((resolve) => {
      if (this.failed) resolve(this.failed);
      else this.once('failed', resolve);
    });
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    const e = err instanceof ReplistreamError ? err : new ReplistreamError('INTERNAL', String((err as Error)?.message ?? err), { cause: err });
    this.failed = e;
    this.stats.state = 'failed';
    this.stats.error = e.message;
    this.log.error({ err: e.message, code: e.code }, 'capture failed');
    this.emit('failed', e);
  }

  private enqueue(work: Work): Promise<void> {
    const next = this.queue.then(async () => {
      if (this.failed) return;
      try {
        await work();
      } catch (err) {
        this.fail(err);
      }
    });
    this.queue = next;
    return next;
  }

  ready(now = Date.now()): boolean {
    const link = this.stats.sourceLink;
    if (link.state === 'disconnected' && link.since !== null && now - link.since > (this.opts.sourceDownGraceMs ?? 30_000)) return false;
    return !this.failed && (this.stats.state === 'synchronizing' || this.stats.state === 'full-sync');
  }
}

/** One source link status for several (a cluster's masters): down when any is, since the earliest. */
export function combineSourceLinks(links: SourceLinkStatus[]): SourceLinkStatus {
  const down = links.filter((l) => l.state === 'disconnected');
  return {
    state: down.length > 0 ? 'disconnected' : 'connected',
    since: down.length > 0 ? Math.min(...down.map((l) => l.since ?? Date.now())) : null,
    retries: Math.max(0, ...down.map((l) => l.retries)),
    reconnects: links.reduce((n, l) => n + l.reconnects, 0),
    lastError: down.find((l) => l.lastError)?.lastError ?? null,
  };
}
