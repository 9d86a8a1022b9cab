/**
 * The capture pipeline: replica link → RDB parser / command units → change events → event sink.
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
import type { Throttle } from '../common/rate-limit.js';
import type { Logger } from '../common/log.js';
import type { ChangeEvent, CommandEvent, Heartbeat, SlotHandOff, SnapshotBegin, SnapshotEnd, SourcePosition } from '../events/model.js';
import { NO_PARTICIPANTS } from '../events/model.js';
import { ReplicaLink, type ReplicaLinkOptions, type ReplicaPosition } from '../replication/link/index.js';
import type { RdbItem, RdbParser } from '../replication/rdb/index.js';
import type { CommandUnit } from '../replication/resp/grouper.js';
import { KeyFilter } from './key-filter.js';
import { OwnKeys } from './own-keys.js';
import { partitionOfKey, routeUnit } from './routing.js';
import { snapshotKeyEvent, type SnapshotFormat } from './snapshot-events.js';
import type { RecordPacker, SealedRecord } from '../events/split.js';
import { keyIndexes } from './command-keys.js';
import { collectIfIdle, noteActivity, paceExternal } from './idle-gc.js';

/** What capture needs from the transport. Implemented over Kafka in service.ts. */

/**
 * Events per Kafka record at most. An applier decodes a whole record at a time and keeps its
 * events until they are written: records of thousands of small keys (1 MiB holds ~8,000) kept
 * that many objects alive across young-generation collections, which then copied and promoted
 * them (a third of the applier's CPU in a full sync). A thousand keeps a record's overhead (~30
 * bytes) negligible.
 */
const EVENTS_PER_RECORD = 1000;

export interface EventSink {
  /**
   * Produce records (packed events, `RecordPacker`) to one partition of one db's topic, in call
   * order per partition; resolves once durable. `bulk`: records of a snapshot (the transport
   * sends them as soon as it can instead of lingering for more).
   */
  sendRecords(db: number, partition: number, records: SealedRecord[], options?: { bulk?: boolean }): Promise<void>;
  writePosition(position: CapturePosition): Promise<void>;
  readPosition(): Promise<CapturePosition | null>;
}

export interface CapturePosition {
  epoch: number;
  replid: string;
  offset: number;
  db: number;
  /** `snapshot`: a full sync of this epoch started and has not completed. */
  state: 'snapshot' | 'streaming';
  updatedAt: number;
}

export interface CaptureOptions {
  link: Omit<ReplicaLinkOptions, 'start' | 'onRdbChunk' | 'onRdbEnd' | 'onRdbAbort' | 'afterUnit' | 'manualConfirm' | 'logger'>;
  sink: EventSink;
  partitions: number;
  /** First partition of this capture's range (cluster sources: one range per master). Default 0. */
  partitionBase?: number;
  dbs: number[];
  /**
   * Chooses the epoch of a full sync that starts (default: the previous one + 1). A cluster
   * capture shares one epoch between its masters (see cluster.ts).
   */
  nextEpoch?: (current: number) => number;
  /** Ignore the stored position and start with a full sync (a cluster capture's new epoch). */
  forceFull?: boolean;
  filter: KeyFilter;
  heartbeatKey: string | null;
  snapshotFormat?: SnapshotFormat;
  flushIntervalMs?: number;
  /** Upper bound of one Kafka record (default 900 000); the sink must accept records this big. */
  maxRecordBytes?: number;
  /** Bytes of records handed to the sink and not acknowledged yet before a snapshot pauses (default 8 MiB). */
  maxInflightBytes?: number;
  /**
   * The RDB parser's entry bound (default 1 MiB): a key whose serialized value is bigger comes in
   * pieces of about this many decoded bytes, as typed elements without a RESTORE payload.
   */
  maxEntryBytes?: number;
  /** Stream bytes received and not durable yet before the link pauses the socket (default 16 MiB). */
  maxUnconfirmedBytes?: number;
  /** Snapshot bytes queued in the link while the pipeline is busy before it pauses the socket (default 4 MiB). */
  maxBufferedBytes?: number;
  /** Full-sync read limit (snapshot-max-bytes-per-second): each RDB chunk is paid for before the next is read. */
  snapshotThrottle?: Throttle<'bytes'>;
  /**
   * A cluster shard's guard (topology.ts ShardKeyFilter): a unit writing a slot the shard did not
   * own so far makes the pipeline hold its stream until the slot's hand-off (cluster-follow.ts).
   */
  slotGuard?: { touchesForeign(commands: Buffer[][]): boolean };
  /**
   * How long the source link may be down before the capture stops counting as ready (/readyz);
   * it goes on retrying (default 30 s).
   */
  sourceDownGraceMs?: number;
  logger: Logger;
}

/** The replication link as an operator sees it. */
export interface SourceLinkStatus {
  state: 'connected' | 'disconnected';
  /** When the current outage started (epoch ms); null while connected. */
  since: number | null;
  /** Attempts made in the current outage. */
  retries: number;
  /** Times the link came back after an outage since the capture started. */
  reconnects: number;
  lastError: string | null;
}

export interface CaptureStats {
  state: 'starting' | 'full-sync' | 'synchronizing' | 'failed' | 'stopped';
  epoch: number;
  replid: string | null;
  sourceOffset: number;
  durableOffset: number;
  snapshotKeys: number;
  snapshotBytes: number;
  /** Length of the current snapshot transfer as the source announced it; null when unknown (diskless). */
  snapshotBytesTotal: number | null;
  commands: number;
  eventsProduced: number;
  fullSyncs: number;
  continues: number;
  lastHeartbeatMs: number | null;
  error: string | null;
  /** When the replication link was first started (epoch ms), null before. */
  linkStartedAt: number | null;
  sourceLink: SourceLinkStatus;
}

type Work = () => Promise<void>;

/**
 * The RDB parser and the event encoder are loaded in the background (module loading is most of
 * a capture's start-up): the link does not need them to connect, and `start` waits for them
 * while it reads the stored position anyway.
 */
const heavy = Promise.all([import('../replication/rdb/index.js'), import('../events/split.js')]).then(([rdb, split]) => ({
  RdbParser: rdb.RdbParser,
  RecordPacker: split.RecordPacker,
  DEFAULT_MAX_RECORD_BYTES: split.DEFAULT_MAX_RECORD_BYTES,
}));
heavy.catch(() => undefined); // awaited in start()
let modules: Awaited<typeof heavy> | null = null;

/**
 * Entries whose serialized size stays under this bound travel with their RESTORE payload; bigger
 * ones as typed pieces without one. Module values can only be written by RESTORE, so the bound
 * must stay above the module values users keep (JSON documents, Bloom filters run to megabytes):
 * 8 MiB, the parser's default. Lowering it saves memory on huge lists (an entry's first piece
 * holds everything decoded while its serialized size stayed under the bound: ~150 MB of heap for
 * a 1M-element list at 8 MiB) but makes module values above it impossible to sync; that wants a
 * piece size in the parser separate from this bound, not a lower bound.
 */
const DEFAULT_MAX_ENTRY_BYTES = 8 * 1024 * 1024;

/**
 * `seq` step between the units cut from one applier transaction of a cascade's middle source
 * (own-keys.ts): they share the transaction's offset, and a unit split into record pieces uses
 * seq, seq + 1 … for them, so the units' seqs are spaced further apart than any piece count.
 */
const CUT_UNIT_SEQ_STEP = 1 << 20;

/**
 * `seq` of the position-only events of a slot hand-off (the old owner's marker, the new owner's
 * hand-off): above any seq a unit, a cut unit or a snapshot uses at one offset, plus the time in
 * ms so that two hand-offs at one offset (no write between them) still grow. Under avsc's 2^53.
 */
const HANDOFF_SEQ_BASE = 2 ** 52;

/** One (db, partition) of the output: its open record and the records sealed, not handed over yet. */
interface Target {
  db: number;
  partition: number;
  packer: RecordPacker;
  sealed: SealedRecord[];
}

export class CaptureService extends EventEmitter {
  private readonly opts: CaptureOptions;
  private readonly log: Logger;
  private link: ReplicaLink | null = null;
  private parser: RdbParser | null = null;
  private queue: Promise<void> = Promise.resolve();
  /** One open record per (db, partition), by `db * 2^20 + partition`. */
  private targets = new Map<number, Target>();
  /** Records handed to the sink, not acknowledged yet: their bytes, and the sends. */
  private inflightBytes = 0;
  private readonly outstanding = new Set<Promise<void>>();
  private inflightWaiters: Array<() => void> = [];
  /** Set by start() (the default comes with the encoder module). */
  private maxRecordBytes = 0;
  private readonly heartbeatKeyBytes: Buffer | null;
  /** replistream's own keys in the source (a cascade's middle server): never forwarded. */
  private readonly ownKeys: OwnKeys;
  /** First partition of this capture's range. */
  private readonly base: number;
  private readonly maxInflightBytes: number;
  private ticks = 0;
  /**
   * Events not encoded yet, behind the pieces of a huge command (see `buffer`), in order; while it
   * holds anything, every new event joins it and no position is recorded.
   */
  private backlog: Array<{ t: Target; events: ChangeEvent[]; next: number }> = [];
  private draining: Promise<void> | null = null;
  private stopping = false;
  private lastUnitEnd: { offset: number; db: number } | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private snapshotSeq = 0;
  private snapshotOffset = 0;
  private snapshotKeysPerDb = new Map<number, number>();
  private sourceVersion: string | null = null;
  private rdbVersion = 0;
  private failed: ReplistreamError | null = null;
  private held = false;
  /** From the source's FULLRESYNC (before the queue reaches it) to the snapshot's end. */
  private snapshotPending = false;
  /**
   * Units received while a slot hand-off is pending, in order, not produced yet (null: not
   * holding). From the first unit that writes a slot this shard did not own (MIGRATE's RESTORE, a
   * write redirected by ASK) until `handOff` puts the hand-off in front of them: a unit produced
   * before it could reach the destination before the old owner's last writes to its keys. The
   * link pauses once `maxUnconfirmedBytes` are held (they are not durable).
   */
  private handOffHeld: CommandUnit[] | null = null;
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
    this.heartbeatKeyBytes = opts.heartbeatKey ? Buffer.from(opts.heartbeatKey) : null;
    this.ownKeys = new OwnKeys([opts.heartbeatKey]);
    this.base = opts.partitionBase ?? 0;
    this.maxInflightBytes = opts.maxInflightBytes ?? 8 * 1024 * 1024;
  }

  async start(): Promise<void> {
    const [last, loaded] = await Promise.all([this.opts.sink.readPosition(), heavy]);
    modules = loaded;
    this.maxRecordBytes = this.opts.maxRecordBytes ?? loaded.DEFAULT_MAX_RECORD_BYTES;
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
    this.flushTimer = setInterval(() => this.tick(), this.opts.flushIntervalMs ?? 20);
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
      onRdbChunk: (chunk) => this.enqueue(() => this.onRdbChunk(chunk)),
      onRdbEnd: () => this.enqueue(() => this.onRdbEnd()),
      onRdbAbort: () => this.enqueue(async () => { this.parser = null; this.began = false; }),
      // the link delivers nothing more until a huge command's records are all made (see `buffer`)
      afterUnit: () => (this.backlog.length > 0 ? this.drainBacklog() : undefined),
    });
    this.link = link;
    if (this.held) link.hold(true);
    // a new link delivers again what the last one delivered after the confirmed position: still
    // holding (the hand-off is pending), without the units that come again
    if (this.handOffHeld) this.handOffHeld = [];
    this.stats.linkStartedAt ??= Date.now();
    // the source answered PSYNC: the link is up (whether or not an outage preceded it)
    const connected = () => {
      if (this.link === link) Object.assign(this.stats.sourceLink, { state: 'connected', since: null, retries: 0, lastError: null });
    };
    link.on('fullresync', connected);
    link.on('continue', connected);
    link.on('fullresync', (info) => {
      this.stats.snapshotBytesTotal = null; // until the transfer's preamble announces it
      this.snapshotPending = true;
      void this.enqueue(() => this.onFullResync(info.replid, info.offset));
    });
    link.on('rdb-size', (info) => {
      if (this.link === link) this.stats.snapshotBytesTotal = info.bytes;
    });
    link.on('continue', (info) => {
      this.snapshotPending = false;
      this.stats.continues++;
      this.stats.replid = info.replid;
      // streaming from here, even before a first unit (a cluster master without writes)
      if (this.stats.state === 'starting') this.stats.state = 'synchronizing';
      this.log.info({ replid: info.replid, offset: info.offset }, 'source continued the stream (+CONTINUE)');
      this.emit('continue', info);
    });
    link.on('unit', (unit) => {
      if (this.link === link) this.onUnit(unit);
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
      await this.flush();
      this.parser = null;
      this.began = false;
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
    await this.enqueue(() => this.flush());
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
        await this.flush();
        this.parser = null;
        this.began = false;
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
    this.handOffHeld ??= [];
  }

  /** True while units wait for a hand-off. */
  get holding(): boolean {
    return this.handOffHeld !== null;
  }

  /** A snapshot is on its way or being captured (the source answered FULLRESYNC; its end not yet produced). */
  get snapshotUnderWay(): boolean {
    return this.snapshotPending && !this.failed && !this.stopping;
  }

  /** Streaming (no snapshot under way): a hand-off can be put in its partitions. */
  get streaming(): boolean {
    return !this.failed && this.parser === null && this.stats.state === 'synchronizing';
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
      if (!link || this.link !== link || processed === null || processed < atLeast || this.handOffHeld || !this.streaming) return;
      const pos = this.handOffPos(processed); // the link's processed offset is at or past the last unit's end
      const partitions: number[] = [];
      for (let p = 0; p < this.opts.partitions; p++) partitions.push(this.base + p);
      for (const db of this.opts.dbs) for (const p of partitions) this.buffer(db, p, { kind: 'heartbeat', pos, db, timeMs: 0 } satisfies Heartbeat);
      await this.flush(true);
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
      const pos = this.handOffPos(this.lastUnitEnd?.offset ?? this.stats.durableOffset);
      for (const db of this.opts.dbs) {
        const event: SlotHandOff = { kind: 'slot-handoff', pos, db, after };
        for (let p = 0; p < this.opts.partitions; p++) this.buffer(db, this.base + p, event);
      }
      await this.flushEvents();
      const held = this.handOffHeld ?? [];
      this.handOffHeld = null;
      this.log.info({ units: held.length, offset: pos.offset }, 'slot hand-off produced: the held writes follow it');
      for (const unit of held) this.onUnit(unit);
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
    await this.enqueue(() => this.flush(true));
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

  // ----- snapshot ------------------------------------------------------------------------------

  private async onFullResync(replid: string, offset: number): Promise<void> {
    await this.flush();
    this.handOffHeld = null; // a new epoch: its snapshot holds what was held
    this.stats.epoch = this.opts.nextEpoch ? this.opts.nextEpoch(this.stats.epoch) : this.stats.epoch + 1;
    this.stats.fullSyncs++;
    this.stats.state = 'full-sync';
    this.stats.replid = replid;
    this.stats.sourceOffset = offset;
    this.snapshotOffset = offset;
    this.snapshotSeq = 0;
    this.snapshotKeysPerDb.clear();
    this.parser = new (modules as NonNullable<typeof modules>).RdbParser({ maxEntryBytes: this.opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES, payloads: this.opts.snapshotFormat !== 'typed' });
    this.lastUnitEnd = null;
    // Recorded before any event of the epoch: a restart now means a new full sync.
    await this.opts.sink.writePosition({ epoch: this.stats.epoch, replid, offset, db: 0, state: 'snapshot', updatedAt: Date.now() });
    this.log.info({ epoch: this.stats.epoch, replid, offset }, 'full sync started');
    this.emit('fullresync', { epoch: this.stats.epoch, replid, offset });
  }

  private beginEvent(db: number): SnapshotBegin {
    return {
      kind: 'snapshot-begin', db, rdbVersion: this.rdbVersion, sourceVersion: this.sourceVersion,
      pos: { epoch: this.stats.epoch, offset: this.snapshotOffset, seq: 0, replid: this.stats.replid ?? '' },
    };
  }

  private began = false;

  private async onRdbChunk(chunk: Buffer): Promise<void> {
    const parser = this.parser;
    if (!parser) return;
    this.stats.snapshotBytes += chunk.length;
    for (const item of parser.push(chunk)) this.onRdbItem(item);
    paceExternal();
    // Throttled: the link queues what comes meanwhile, then pauses the socket (source slows down).
    await this.opts.snapshotThrottle?.take({ bytes: chunk.length });
    // Backpressure: the next chunk waits while too many bytes wait for Kafka's acks.
    if (this.inflightBytes > this.maxInflightBytes) await this.inflightBelow(this.maxInflightBytes / 2);
  }

  private onRdbItem(item: RdbItem): void {
    if (item.kind === 'header') {
      this.rdbVersion = item.version;
    } else if (item.kind === 'aux') {
      const k = item.key.toString();
      if (k === 'redis-ver' || k === 'valkey-ver') this.sourceVersion = item.value.toString();
    } else if (item.kind === 'entry') {
      if (!this.began) this.broadcastBegin();
      if (!this.opts.filter.dbSelected(item.db) || !this.opts.filter.keySelected(item.key)) return;
      if (this.ownKeys.isOwn(item.key)) return; // bookkeeping of an applier writing this source, or a heartbeat
      if (item.expireAtMs !== null && item.expireAtMs <= Date.now()) return; // already expired at the source
      const event = snapshotKeyEvent(item, ++this.snapshotSeq, {
        epoch: this.stats.epoch, offset: this.snapshotOffset, replid: this.stats.replid ?? '', format: this.opts.snapshotFormat ?? 'restore',
      });
      if (item.piece === null || item.piece.last) this.snapshotKeysPerDb.set(item.db, (this.snapshotKeysPerDb.get(item.db) ?? 0) + 1);
      this.stats.snapshotKeys++;
      this.buffer(item.db, this.base + partitionOfKey(item.key, this.opts.partitions), event);
    } else if (item.kind === 'function') {
      if (!this.began) this.broadcastBegin();
      // Functions are server-wide: replayed as FUNCTION LOAD REPLACE, in order with db partition 0.
      const db = this.opts.dbs[0];
      const unit: CommandEvent = {
        kind: 'command', db, commands: [[Buffer.from('FUNCTION'), Buffer.from('LOAD'), Buffer.from('REPLACE'), item.code]],
        participants: [], piece: null,
        pos: { epoch: this.stats.epoch, offset: this.snapshotOffset, seq: ++this.snapshotSeq, replid: this.stats.replid ?? '' },
      };
      this.buffer(db, this.base, unit);
    }
  }

  /** snapshot-begin goes to every partition of every synced db: the appliers' epoch barrier. */
  private broadcastBegin(): void {
    this.began = true;
    for (const db of this.opts.dbs) for (let p = 0; p < this.opts.partitions; p++) this.buffer(db, this.base + p, this.beginEvent(db));
  }

  private async onRdbEnd(): Promise<void> {
    const parser = this.parser;
    if (!parser) return;
    parser.finish();
    // Keys holding an empty list/set/zset/hash were skipped by the parser, as Redis skips them when
    // it loads an RDB (a destination would refuse their RESTORE payloads): said once per sync.
    if (parser.emptyKeysSkipped > 0) {
      const first = parser.emptyKeysSample.map((k) => `${k.db}:${k.key.toString('utf8', 0, 200)}`);
      this.log.warn({ epoch: this.stats.epoch, count: parser.emptyKeysSkipped, first }, 'snapshot keys holding an empty collection skipped (as Redis skips them on load)');
    }
    if (!this.began) this.broadcastBegin();
    this.began = false;
    for (const db of this.opts.dbs) {
      for (let p = 0; p < this.opts.partitions; p++) {
        const end: SnapshotEnd = {
          kind: 'snapshot-end', db, keyCount: this.snapshotKeysPerDb.get(db) ?? 0,
          pos: { epoch: this.stats.epoch, offset: this.snapshotOffset, seq: this.snapshotSeq + 1, replid: this.stats.replid ?? '' },
        };
        this.buffer(db, this.base + p, end);
      }
    }
    // Bytes after the RDB (disk-based transfer) are stream bytes: the link parses them itself.
    this.parser = null;
    await this.flushEvents();
    for (const t of this.targets.values()) t.packer.trim();
    const db = this.link?.position?.db ?? 0;
    await this.opts.sink.writePosition({
      epoch: this.stats.epoch, replid: this.stats.replid ?? '', offset: this.snapshotOffset, db, state: 'streaming', updatedAt: Date.now(),
    });
    this.stats.durableOffset = this.snapshotOffset;
    this.stats.state = 'synchronizing';
    this.snapshotPending = false;
    this.log.info({ epoch: this.stats.epoch, keys: this.stats.snapshotKeys, bytes: this.stats.snapshotBytes }, 'full sync captured');
    this.emit('snapshot-end', { epoch: this.stats.epoch });
  }

  // ----- command stream ------------------------------------------------------------------------

  private onUnit(unit: CommandUnit): void {
    if (this.failed) return;
    if (this.handOffHeld) {
      this.opts.slotGuard?.touchesForeign(unit.commands); // notes the slots it writes: they must be handed over too
      this.handOffHeld.push(unit);
      return;
    }
    if (this.opts.slotGuard?.touchesForeign(unit.commands)) {
      this.handOffHeld = [unit];
      this.log.info({ offset: unit.endOffset }, 'a write to a slot this master did not own: its stream waits for the slots\' hand-off');
      this.emit('foreign-write');
      return;
    }
    if (this.stats.state !== 'full-sync') this.stats.state = 'synchronizing';
    this.stats.sourceOffset = unit.endOffset;
    this.lastUnitEnd = { offset: unit.endOffset, db: unit.endDb };
    const pos: SourcePosition = { epoch: this.stats.epoch, offset: unit.endOffset, seq: 0, replid: this.link?.replicationId ?? this.stats.replid ?? '' };
    const heartbeat = this.heartbeatOf(unit, pos);
    if (heartbeat) {
      // on every stream of every synced db: an applier holding only other dbs (a group with
      // db assignment) measures its lag too
      if (this.opts.filter.dbSelected(unit.db)) {
        for (const db of this.opts.dbs) {
          const copy = db === unit.db ? heartbeat : { ...heartbeat, db };
          for (let p = 0; p < this.opts.partitions; p++) this.buffer(db, this.base + p, copy);
        }
      }
      return;
    }
    const runs = this.ownKeys.mayTouch(unit.commands) ? this.ownKeys.strip(unit.db, unit.commands) : null;
    if (runs === null) {
      this.emitUnit(unit.db, unit.commands, pos);
      return;
    }
    // an applier's transaction: its bookkeeping dropped, the rest one unit per database run
    for (let i = 0; i < runs.length; i++) this.emitUnit(runs[i].db, runs[i].commands, i === 0 ? pos : { ...pos, seq: i * CUT_UNIT_SEQ_STEP });
  }

  private emitUnit(db: number, unitCommands: Buffer[][], pos: SourcePosition): void {
    const commands = this.opts.filter.filtersKeys ? this.filterUnitKeys(unitCommands) : unitCommands;
    if (commands.length === 0) return;
    const participants = routeUnit(db, commands, { partitions: this.opts.partitions, partitionBase: this.base, syncedDbs: this.opts.dbs });
    if (participants.length === 0) return;
    this.stats.commands += commands.length;
    const event: CommandEvent = {
      kind: 'command', pos, db, commands, piece: null,
      // (a list of several is the unit's own; one of one is shared by every unit routed there)
      participants: participants.length > 1 ? (participants as CommandEvent['participants']) : NO_PARTICIPANTS,
    };
    for (const p of participants) this.buffer(p.db, p.partition, event);
  }

  /** A lone SET of the heartbeat key becomes a Heartbeat event: lag is measured, nothing written. */
  private heartbeatOf(unit: CommandUnit, pos: SourcePosition): Heartbeat | null {
    const key = this.heartbeatKeyBytes;
    if (!key || unit.commands.length !== 1) return null;
    const [name, k, v] = unit.commands[0];
    if (!k || k.length !== key.length || !name || name.length !== 3 || !k.equals(key) || name.toString('latin1').toLowerCase() !== 'set') return null;
    const timeMs = Number(v?.toString());
    if (!Number.isFinite(timeMs)) return null;
    this.stats.lastHeartbeatMs = timeMs;
    return { kind: 'heartbeat', pos, db: unit.db, timeMs };
  }

  /** Drops commands whose keys are all filtered out (keyless commands are kept). */
  private filterUnitKeys(commands: Buffer[][]): Buffer[][] {
    return commands.filter((args) => {
      const idx = keyIndexes(args);
      if (idx === null || idx.length === 0) return true;
      return idx.some((i) => this.opts.filter.keySelected(args[i]));
    });
  }

  // ----- buffering and flushing ----------------------------------------------------------------

  private target(db: number, partition: number): Target {
    const id = db * 1_048_576 + partition;
    let t = this.targets.get(id);
    if (!t) {
      t = { db, partition, packer: new (modules as NonNullable<typeof modules>).RecordPacker(this.maxRecordBytes, { maxEvents: EVENTS_PER_RECORD }), sealed: [] };
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
  private buffer(db: number, partition: number, event: ChangeEvent): void {
    const t = this.target(db, partition);
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
    if (this.parser === null) this.scheduleFlush();
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
  private drainBacklog(): Promise<void> {
    this.draining ??= (async () => {
      try {
        while (this.backlog.length > 0) {
          await this.inflightBelow(this.maxInflightBytes / 2);
          if (this.failed || this.stopping) {
            // nothing of it is durable (no position was recorded past it): a restart sends it again
            this.backlog = [];
            return;
          }
          this.packBacklog();
        }
        if (this.parser === null) this.scheduleFlush();
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
    const sent: Promise<void> = this.opts.sink.sendRecords(t.db, t.partition, records, { bulk: this.parser !== null }).then(
      () => {
        this.stats.eventsProduced += count;
        done();
      },
      (err: unknown) => {
        done();
        throw err;
      },
    );
    this.outstanding.add(sent);
    sent.catch((err: unknown) => this.fail(err));
  }

  /** Resolves once at most `bytes` of records wait for Kafka's acks. */
  private async inflightBelow(bytes: number): Promise<void> {
    while (this.inflightBytes > bytes && !this.failed) await new Promise<void>((r) => this.inflightWaiters.push(r));
  }

  private flushScheduled = false;
  private lastPositionWriteMs = 0;

  /** While streaming, events leave as soon as the previous flush is done (lag), not on a timer. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      void this.enqueue(async () => {
        this.flushScheduled = false;
        await this.flush();
      });
    });
  }

  private tick(): void {
    // During a snapshot records leave when full (and all at its end): no timer flush.
    if (this.parser === null) void this.enqueue(() => this.flush());
    // Every second: a record buffer grown by a burst is let go (it grows again when needed), and
    // once a burst is over its garbage is collected (idle-gc.ts).
    if (++this.ticks % 50 === 0) {
      for (const t of this.targets.values()) t.packer.trim();
      if (collectIfIdle()) this.log.debug('burst over: memory collected');
    }
  }

  /** Seals every open record and waits until Kafka acknowledged everything handed over so far. */
  private async flushEvents(): Promise<void> {
    for (const t of this.targets.values()) {
      if (t.packer.openCount > 0) t.packer.seal(t.sealed);
      this.dispatch(t);
    }
    if (this.outstanding.size > 0) await Promise.all([...this.outstanding]);
  }

  private async flush(force = false): Promise<void> {
    if (this.parser) {
      // During a snapshot only events are flushed; the position moves once the snapshot is complete.
      await this.flushEvents();
      return;
    }
    const end = this.lastUnitEnd;
    // events still in the backlog are not handed over by this flush, so not durable after it: no
    // position past them (a flush after the drain records it)
    const incomplete = this.backlog.length > 0;
    await this.flushEvents();
    paceExternal();
    if (incomplete) return;
    // The durable position is recorded at most every 100 ms (the timer flush catches up): it only
    // bounds what a restart re-sends, and duplicates are recognised downstream.
    if (end && end.offset > this.stats.durableOffset && (force || Date.now() - this.lastPositionWriteMs >= 100)) {
      this.lastPositionWriteMs = Date.now();
      await this.opts.sink.writePosition({
        epoch: this.stats.epoch, replid: this.link?.replicationId ?? this.stats.replid ?? '', offset: end.offset, db: end.db,
        state: 'streaming', updatedAt: Date.now(),
      });
      this.stats.durableOffset = end.offset;
      this.link?.confirm(end.offset);
    }
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
