/**
 * The capture's snapshot source: a full sync's RDB bytes → RdbParser items → snapshot events
 * (snapshot-begin in every partition, a snapshot-key per key, the functions, snapshot-end in every
 * partition), and the positions that frame them: the epoch's start recorded before any of its
 * events, its end (state `streaming`) once they are all in Kafka.
 *
 * Why a file of its own: a snapshot has its own state (the parser, the snapshot's offset and
 * sequence, its key counts) and its own rules (an epoch barrier, keys filtered and never expired,
 * no position until the end), none of which the stream of commands shares (stream-source.ts);
 * like Debezium's snapshot change-event source beside its streaming one, both write to one event
 * buffer (event-buffer.ts). What it reads of the rest of the capture comes through
 * `SnapshotSourceContext`.
 */
import type { Logger } from '../common/log.js';
import type { CommandEvent, SnapshotBegin, SnapshotEnd } from '../events/model.js';
import type { RdbItem, RdbParser } from '../replication/rdb/index.js';
import type { CaptureOptions, CaptureStats } from './capture-types.js';
import type { EventBuffer } from './event-buffer.js';
import { paceExternal } from './idle-gc.js';
import type { OwnKeys } from './own-keys.js';
import { partitionOfKey } from './routing.js';
import { snapshotKeyEvent } from './snapshot-events.js';

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

/** What the snapshot source reads of the capture; one object made with the capture. */
export interface SnapshotSourceContext {
  readonly opts: Pick<CaptureOptions, 'sink' | 'dbs' | 'partitions' | 'filter' | 'snapshotFormat' | 'maxEntryBytes' | 'snapshotThrottle' | 'nextEpoch'>;
  /** First partition of this capture's range. */
  readonly partitionBase: number;
  /** replistream's own keys in the source (a cascade's middle server): never sent. */
  readonly ownKeys: OwnKeys;
  readonly stats: Pick<CaptureStats, 'epoch' | 'fullSyncs' | 'state' | 'replid' | 'sourceOffset' | 'snapshotKeys' | 'snapshotBytes' | 'durableOffset'>;
  readonly log: Logger;
  readonly events: Pick<EventBuffer, 'buffer' | 'flush' | 'flushEvents' | 'trimRecords' | 'snapshotBackpressure'>;
  /** A new epoch starts: what the stream held for a slot hand-off and where it stood are behind its snapshot (stream-source.ts). */
  newEpoch(): void;
  /** The db the link's position stands in (0 without a link), recorded with the snapshot's end. */
  linkDb(): number;
  /** Tells the capture's listeners. */
  emit(event: 'fullresync' | 'snapshot-end', info: object): void;
}

export class SnapshotSource {
  private readonly ctx: SnapshotSourceContext;
  /** The RDB parser module, loaded in the background (capture.ts); set by `useParser` before a full sync. */
  private parserClass: typeof RdbParser | null = null;
  /** The current snapshot's parser; null when no snapshot is being captured. */
  private parser: RdbParser | null = null;
  private snapshotSeq = 0;
  private snapshotOffset = 0;
  private snapshotKeysPerDb = new Map<number, number>();
  private sourceVersion: string | null = null;
  private rdbVersion = 0;
  private began = false;
  /** From the source's FULLRESYNC (before the queue reaches it) to the snapshot's end. */
  private snapshotPending = false;

  constructor(ctx: SnapshotSourceContext) {
    this.ctx = ctx;
  }

  /** The RDB parser module once loaded (capture.ts `start`). */
  useParser(parserClass: typeof RdbParser): void {
    this.parserClass = parserClass;
  }

  /** True while a snapshot is being captured (from its FULLRESYNC's turn in the queue to its end or abort). */
  get capturing(): boolean {
    return this.parser !== null;
  }

  /** A snapshot is on its way or being captured (the source answered FULLRESYNC; its end not yet produced). */
  get pending(): boolean {
    return this.snapshotPending;
  }

  /** The link reports the source's FULLRESYNC (its snapshot comes through the queue later). */
  fullResyncAnnounced(): void {
    this.snapshotPending = true;
  }

  /** The link reports the source continued the stream (+CONTINUE): no snapshot is on its way. */
  streamContinued(): void {
    this.snapshotPending = false;
  }

  /** The snapshot under way is given up (its transfer aborted, the link dropped or moved). */
  abandon(): void {
    this.parser = null;
    this.began = false;
  }

  async onFullResync(replid: string, offset: number): Promise<void> {
    const { stats, opts } = this.ctx;
    await this.ctx.events.flush();
    this.ctx.newEpoch(); // a new epoch: its snapshot holds what was held
    stats.epoch = opts.nextEpoch ? opts.nextEpoch(stats.epoch) : stats.epoch + 1;
    stats.fullSyncs++;
    stats.state = 'full-sync';
    stats.replid = replid;
    stats.sourceOffset = offset;
    this.snapshotOffset = offset;
    this.snapshotSeq = 0;
    this.snapshotKeysPerDb.clear();
    this.parser = new (this.parserClass as typeof RdbParser)({ maxEntryBytes: opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES, payloads: opts.snapshotFormat !== 'typed' });
    // Recorded before any event of the epoch: a restart now means a new full sync.
    await opts.sink.writePosition({ epoch: stats.epoch, replid, offset, db: 0, state: 'snapshot', updatedAt: Date.now() });
    this.ctx.log.info({ epoch: stats.epoch, replid, offset }, 'full sync started');
    this.ctx.emit('fullresync', { epoch: stats.epoch, replid, offset });
  }

  private beginEvent(db: number): SnapshotBegin {
    return {
      kind: 'snapshot-begin', db, rdbVersion: this.rdbVersion, sourceVersion: this.sourceVersion,
      pos: { epoch: this.ctx.stats.epoch, offset: this.snapshotOffset, seq: 0, replid: this.ctx.stats.replid ?? '' },
    };
  }

  async onRdbChunk(chunk: Buffer): Promise<void> {
    const parser = this.parser;
    if (!parser) return;
    this.ctx.stats.snapshotBytes += chunk.length;
    for (const item of parser.push(chunk)) this.onRdbItem(item);
    paceExternal();
    // Throttled: the link queues what comes meanwhile, then pauses the socket (source slows down).
    await this.ctx.opts.snapshotThrottle?.take({ bytes: chunk.length });
    // Backpressure: the next chunk waits while too many bytes wait for Kafka's acks.
    const backpressure = this.ctx.events.snapshotBackpressure();
    if (backpressure) await backpressure;
  }

  private onRdbItem(item: RdbItem): void {
    const { stats, opts } = this.ctx;
    if (item.kind === 'header') {
      this.rdbVersion = item.version;
    } else if (item.kind === 'aux') {
      const k = item.key.toString();
      if (k === 'redis-ver' || k === 'valkey-ver') this.sourceVersion = item.value.toString();
    } else if (item.kind === 'entry') {
      if (!this.began) this.broadcastBegin();
      if (!opts.filter.dbSelected(item.db) || !opts.filter.keySelected(item.key)) return;
      if (this.ctx.ownKeys.isOwn(item.key)) return; // bookkeeping of an applier writing this source, or a heartbeat
      if (item.expireAtMs !== null && item.expireAtMs <= Date.now()) return; // already expired at the source
      const event = snapshotKeyEvent(item, ++this.snapshotSeq, {
        epoch: stats.epoch, offset: this.snapshotOffset, replid: stats.replid ?? '', format: opts.snapshotFormat ?? 'restore',
      });
      if (item.piece === null || item.piece.last) this.snapshotKeysPerDb.set(item.db, (this.snapshotKeysPerDb.get(item.db) ?? 0) + 1);
      stats.snapshotKeys++;
      this.ctx.events.buffer(item.db, this.ctx.partitionBase + partitionOfKey(item.key, opts.partitions), event);
    } else if (item.kind === 'function') {
      if (!this.began) this.broadcastBegin();
      // Functions are server-wide: replayed as FUNCTION LOAD REPLACE, in order with db partition 0.
      const db = opts.dbs[0];
      const unit: CommandEvent = {
        kind: 'command', db, commands: [[Buffer.from('FUNCTION'), Buffer.from('LOAD'), Buffer.from('REPLACE'), item.code]],
        participants: [], piece: null,
        pos: { epoch: stats.epoch, offset: this.snapshotOffset, seq: ++this.snapshotSeq, replid: stats.replid ?? '' },
      };
      this.ctx.events.buffer(db, this.ctx.partitionBase, unit);
    }
  }

  /** snapshot-begin goes to every partition of every synced db: the appliers' epoch barrier. */
  private broadcastBegin(): void {
    this.began = true;
    const { dbs, partitions } = this.ctx.opts;
    for (const db of dbs) for (let p = 0; p < partitions; p++) this.ctx.events.buffer(db, this.ctx.partitionBase + p, this.beginEvent(db));
  }

  async onRdbEnd(): Promise<void> {
    const parser = this.parser;
    if (!parser) return;
    const { stats, opts, events } = this.ctx;
    parser.finish();
    // Keys holding an empty list/set/zset/hash were skipped by the parser, as Redis skips them when
    // it loads an RDB (a destination would refuse their RESTORE payloads): said once per sync.
    if (parser.emptyKeysSkipped > 0) {
      const first = parser.emptyKeysSample.map((k) => `${k.db}:${k.key.toString('utf8', 0, 200)}`);
      this.ctx.log.warn({ epoch: stats.epoch, count: parser.emptyKeysSkipped, first }, 'snapshot keys holding an empty collection skipped (as Redis skips them on load)');
    }
    if (!this.began) this.broadcastBegin();
    this.began = false;
    for (const db of opts.dbs) {
      for (let p = 0; p < opts.partitions; p++) {
        const end: SnapshotEnd = {
          kind: 'snapshot-end', db, keyCount: this.snapshotKeysPerDb.get(db) ?? 0,
          pos: { epoch: stats.epoch, offset: this.snapshotOffset, seq: this.snapshotSeq + 1, replid: stats.replid ?? '' },
        };
        events.buffer(db, this.ctx.partitionBase + p, end);
      }
    }
    // Bytes after the RDB (disk-based transfer) are stream bytes: the link parses them itself.
    this.parser = null;
    await events.flushEvents();
    events.trimRecords();
    const db = this.ctx.linkDb();
    await opts.sink.writePosition({
      epoch: stats.epoch, replid: stats.replid ?? '', offset: this.snapshotOffset, db, state: 'streaming', updatedAt: Date.now(),
    });
    stats.durableOffset = this.snapshotOffset;
    stats.state = 'synchronizing';
    this.snapshotPending = false;
    this.ctx.log.info({ epoch: stats.epoch, keys: stats.snapshotKeys, bytes: stats.snapshotBytes }, 'full sync captured');
    this.ctx.emit('snapshot-end', { epoch: stats.epoch });
  }
}
