/**
 * Where the sync stands: the stream followed (replid), how far it is processed (the parser and
 * grouper, at their offsets), whether that is a point to resume from, and the steps of a sync on a
 * session — a full sync, its snapshot transfer, then the stream; or a continued stream.
 *
 * Why apart from the link: the link's lifecycle (connect, lose, reconnect, stop) only asks where
 * to resume and rewinds after a cut; every step of the sync itself comes from the handshake's
 * decisions (handshake.ts) and from the session's bytes, and they all move the same position.
 */
import type { EventEmitter } from 'node:events';
import { ReplistreamError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { PACK_ARGS_FROM } from '../../events/packed-args.js';
import { CommandGrouper } from '../resp/grouper.js';
import { RespParser } from '../resp/parser.js';
import { SnapshotReader } from '../resp/reply-reader.js';
import type { ConfirmWindow } from './confirm-window.js';
import type { DeliveryQueue } from './delivery-queue.js';
import type { HandshakeOutcomes, SnapshotPreamble } from './handshake.js';
import { encodeCommand, write, type Session } from './link-session.js';
import type { ReplicaLinkEvents, ReplicaPosition } from './link-types.js';

// views: socket chunks are fresh buffers, never reused (see RespParserOptions.views); commands of
// very many arguments packed (an HSET of a million fields: 38 MB instead of 216 MB of Buffers)
const PARSER_OPTIONS = { views: true, packArgsFrom: PACK_ARGS_FROM };

/** What the sync reads of the link, and what it tells it; one object made with the link. */
export interface SyncContext {
  readonly log: Logger;
  /** The link, whose events announce the sync's steps. */
  readonly events: Pick<EventEmitter<ReplicaLinkEvents>, 'emit'>;
  readonly queue: Pick<DeliveryQueue, 'enqueue' | 'dropSnapshotBytes'>;
  readonly window: Pick<ConfirmWindow, 'clear' | 'ackPoint'>;
  /** The source accepted the attempt (FULLRESYNC or CONTINUE): an outage, if any, is over. */
  sourceAccepted(): void;
  /** The snapshot's bytes begin (the link's state becomes 'transfer'). */
  transferStarts(): void;
  /** The command stream begins (the link's state becomes 'streaming'). */
  streamStarts(): void;
}

export class SyncState implements HandshakeOutcomes {
  private readonly ctx: SyncContext;
  /** Replication id of the stream being followed (null before the first sync). */
  private streamId: string | null = null;
  /** True when (replid, grouper.offset, grouper.db) is a valid resume point. */
  private synced = false;
  private streamParser = new RespParser(PARSER_OPTIONS);
  private streamGrouper = new CommandGrouper();

  constructor(ctx: SyncContext) {
    this.ctx = ctx;
  }

  /** Replication id currently followed. */
  get replid(): string | null {
    return this.streamId;
  }

  /** The stream's bytes → commands; a new one at each full sync. */
  get parser(): RespParser {
    return this.streamParser;
  }

  /** Commands → units, and the processed offset and database; a new one at each full sync. */
  get grouper(): CommandGrouper {
    return this.streamGrouper;
  }

  /** Where a restarted capture may resume from: confirmed (manual mode) or processed offset. */
  get position(): ReplicaPosition | null {
    if (!this.synced || this.streamId === null || this.streamId === '?') return null;
    const { offset, db } = this.ctx.window.ackPoint(this.streamGrouper.offset, this.streamGrouper.db);
    return { replid: this.streamId, offset, db };
  }

  /** Offset after the last unit (or PING/SELECT/REPLCONF) handled; null before a sync. */
  get processedOffset(): number | null {
    return this.synced ? this.streamGrouper.offset : null;
  }

  /** The offset the link reports in `REPLCONF ACK`. */
  get ackOffset(): number | null {
    if (!this.synced) return null;
    return this.ctx.window.ackPoint(this.streamGrouper.offset, this.streamGrouper.db).offset;
  }

  /** A durable position to resume from (the link's `start` option); throws CONFIG when malformed. */
  resumeFrom(start: ReplicaPosition): void {
    if (!/^[0-9a-zA-Z]{40}$/.test(start.replid) || !Number.isSafeInteger(start.offset) || start.offset < 0 ||
        !Number.isInteger(start.db) || start.db < 0) {
      throw new ReplistreamError('CONFIG', 'start position must be { replid: 40 characters, offset ≥ 0, db ≥ 0 }', {
        setting: 'start',
      });
    }
    this.adoptPosition(start.replid, start.offset, start.db);
    this.synced = true;
  }

  /** The stream followed and the offset processed in it, for PSYNC; null when only a full sync can do. */
  resumePoint(): { replid: string; offset: number } | null {
    const replid = this.streamId;
    return this.synced && replid !== null && replid !== '?' ? { replid, offset: this.streamGrouper.offset } : null;
  }

  /** After a cut, once every byte received is parsed: the next session's stream starts at the processed offset. */
  rewind(): void {
    if (this.synced) {
      this.streamParser.reset(this.streamGrouper.offset);
      this.streamGrouper.reset(this.streamGrouper.offset, this.streamGrouper.db);
    }
  }

  sendAck(s: Session): void {
    const offset = this.ackOffset;
    if (offset === null || s.ended) return;
    s.lastAckAt = Date.now();
    write(s, encodeCommand(['REPLCONF', 'ACK', String(offset)]));
  }

  // ------------------------------------------------------------------ what the handshake decided

  beginFullSync(s: Session, replid: string, offset: number, legacy: boolean): void {
    s.legacy = legacy;
    s.inFullSync = true;
    this.synced = false;
    this.ctx.window.clear();
    this.adoptPosition(replid, offset, 0);
    this.ctx.sourceAccepted();
    this.ctx.log.info({ replid, offset, legacy }, 'full synchronization');
    this.ctx.events.emit('fullresync', { replid, offset, legacySync: legacy });
  }

  /** CONTINUE: the stream goes on from the processed offset, in the database selected there. */
  continueStream(s: Session, newReplid: string | null): void {
    const previousReplid = this.streamId as string;
    if (newReplid) this.streamId = newReplid;
    const offset = this.streamGrouper.offset;
    this.ctx.log.info({ replid: this.streamId, offset, previousReplid }, 'partial resynchronization accepted');
    this.ctx.sourceAccepted();
    this.ctx.events.emit('continue', { replid: this.streamId as string, offset, previousReplid });
    this.startStream(s, s.reader.takeRemainder());
  }

  /** The snapshot's preamble arrived: the session's bytes are snapshot bytes from now on. */
  beginTransfer(s: Session, r: SnapshotPreamble): void {
    s.snapshot = new SnapshotReader(r);
    s.mode = 'transfer';
    this.ctx.transferStarts();
    this.ctx.log.info({ diskless: r.type === 'eof', bytes: r.type === 'bulk' ? r.length : undefined }, 'receiving snapshot');
    this.ctx.events.emit('rdb-size', { bytes: r.type === 'bulk' ? r.length : null });
    this.onTransferData(s, s.reader.takeRemainder());
  }

  // ------------------------------------------------------------------ the session's bytes

  onTransferData(s: Session, chunk: Buffer): void {
    const queue = this.ctx.queue;
    const snap = s.snapshot as SnapshotReader;
    const progress = snap.push(chunk);
    for (const d of progress.data) queue.enqueue({ kind: 'rdb', buf: d });
    if (!progress.done) return;
    this.ctx.log.info({ bytes: snap.bytes, diskless: snap.diskless }, 'snapshot received');
    queue.enqueue({ kind: 'rdb-end', info: { bytes: snap.bytes, diskless: snap.diskless } });
    s.snapshot = null;
    s.inFullSync = false;
    this.synced = true;
    // A diskless master sends nothing more until it gets an ACK; a disk-based one does not mind one.
    if (!s.legacy || snap.diskless) this.sendAck(s);
    this.startStream(s, progress.rest);
  }

  /** The session ended during a full sync (between FULLRESYNC and the snapshot's end). */
  abortSnapshot(error: ReplistreamError): void {
    // Snapshot bytes not delivered yet are useless now; the consumer learns of the abort in order.
    // The next attempt asks for a new full sync (the old position was given up at FULLRESYNC).
    this.ctx.queue.dropSnapshotBytes();
    this.synced = false;
    this.ctx.queue.enqueue({ kind: 'rdb-abort', error });
  }

  private startStream(s: Session, rest: Buffer): void {
    s.mode = 'stream';
    this.ctx.streamStarts();
    if (rest.length > 0) this.ctx.queue.enqueue({ kind: 'stream', buf: rest });
  }

  private adoptPosition(replid: string, offset: number, db: number): void {
    this.streamId = replid;
    this.streamParser = new RespParser({ ...PARSER_OPTIONS, offset });
    this.streamGrouper = new CommandGrouper({ offset, db });
  }
}
