/**
 * The change-event model: what capture puts on a topic and what an applier reads back.
 *
 * Pure data. It knows neither Kafka nor the Redis wire formats; `codec.ts` turns it into Avro
 * (schemas/*.avsc) and back. Every event carries a `SourcePosition`, totally ordered, so a
 * duplicate (capture re-sending after a crash, an applier re-reading after one) is recognised
 * downstream by comparing positions, never by content.
 */

/**
 * Where an event comes from in the source's history.
 * - `epoch` grows by one at every full synchronization (a new snapshot): events of a later epoch
 *   supersede everything of earlier ones.
 * - `offset` is the source replication offset: for a snapshot record the offset the snapshot was
 *   taken at (the `+FULLRESYNC` offset); for a command the offset just after its last byte (for a
 *   MULTI…EXEC unit, after EXEC). Kept as a JS number: exact up to 2^53 bytes of stream (9 PB).
 * - `seq` orders events that share an offset: the key's index inside a snapshot, or the piece of
 *   a split command. 0 for ordinary commands.
 * - `replid` is the replication id the offset belongs to (informational; ordering uses the
 *   three numbers, because offsets continue across a `+CONTINUE <newid>`).
 */
export interface SourcePosition {
  epoch: number;
  offset: number;
  seq: number;
  replid: string;
}

/** Lexicographic order on (epoch, offset, seq). Negative when a < b. */
export function comparePositions(a: SourcePosition, b: SourcePosition): number {
  return a.epoch - b.epoch || a.offset - b.offset || a.seq - b.seq;
}

export type RedisType = 'string' | 'list' | 'set' | 'zset' | 'hash' | 'stream' | 'module';

/**
 * A key's value in typed form, for the `commands` write mode (destinations that cannot RESTORE the
 * source's payload). Binary-safe: every element is a Buffer. Big keys arrive as several pieces,
 * each holding a slice of the elements (see SnapshotKey.piece).
 */
export type TypedValue =
  | { type: 'string'; value: Buffer }
  | { type: 'list'; items: Buffer[] }
  | { type: 'set'; members: Buffer[] }
  | { type: 'zset'; entries: Array<{ member: Buffer; score: number }> }
  | { type: 'hash'; entries: Array<{ field: Buffer; value: Buffer; expireAtMs: number | null }> }
  | { type: 'stream'; stream: StreamValue }
  | { type: 'module'; moduleId: string };

export interface StreamId {
  ms: bigint;
  seq: bigint;
}

export interface StreamValue {
  entries: Array<{ id: StreamId; fields: Buffer[] }>; // fields: [f1, v1, f2, v2, ...]
  length: number;
  lastId: StreamId;
  firstId?: StreamId;
  maxDeletedId?: StreamId;
  entriesAdded?: number;
  groups: Array<{
    name: Buffer;
    lastId: StreamId;
    entriesRead?: number; // absent when unknown (-1 in the RDB)
    pending: Array<{ id: StreamId; deliveryTimeMs: number; deliveryCount: number; consumer?: Buffer }>;
    consumers: Array<{ name: Buffer; seenTimeMs: number; activeTimeMs?: number; pending: StreamId[] }>;
  }>;
}

/**
 * Marks one piece of an event split to fit Kafka's record limit (services/events/split.ts builds
 * them, `PieceAssembler` there rebuilds the whole event). `continued` (absent = false) is set only
 * when one element is itself bigger than a record: the first element of this piece (collection
 * element, stream entry, or command with its first argument) continues the previous piece's last
 * element, whose bytes it extends.
 */
export interface EventPiece {
  index: number;
  last: boolean;
  continued?: boolean;
}

/** Start of a snapshot of one source database in a new epoch. */
export interface SnapshotBegin {
  kind: 'snapshot-begin';
  pos: SourcePosition;
  db: number;
  rdbVersion: number;
  sourceVersion: string | null; // e.g. "7.0.15", from the RDB's redis-ver AUX field
}

/** End of a snapshot of one source database: every key of the epoch was sent before this. */
export interface SnapshotEnd {
  kind: 'snapshot-end';
  pos: SourcePosition;
  db: number;
  keyCount: number;
}

/**
 * One key of a snapshot, or one piece of a big one.
 * - `payload` is a ready RESTORE payload (serialized object + RDB version + CRC64), built from the
 *   RDB bytes without re-encoding. For a key split into pieces, each piece holds a slice of it and
 *   the applier concatenates them in `piece.index` order.
 * - `value` is the typed form (or a slice of its elements for a piece); null when the capture was
 *   configured to send payloads only.
 * - `piece` is null for a key that fits in one record.
 */
export interface SnapshotKey {
  kind: 'snapshot-key';
  pos: SourcePosition;
  db: number;
  key: Buffer;
  type: RedisType;
  expireAtMs: number | null;
  payload: Buffer | null;
  value: TypedValue | null;
  piece: EventPiece | null;
  /**
   * True for the second and later parts of a key too big for the RDB parser to hold (its value
   * over the parser's bound): the applier adds these elements to the key instead of replacing it.
   * Absent/false for a whole key or the first part. (Not the same as `piece`, which splits one
   * event over several Kafka records and is reassembled before writing.)
   */
  append?: boolean;
}

/**
 * One propagated write, or one atomic unit of writes (MULTI…EXEC, script effects): `commands`
 * holds each command's arguments (the name first), binary-safe. A unit is applied atomically.
 * `db` is the database the unit starts in (SELECT inside a unit is kept as a command).
 * `participants` lists every (db, partition) that received this same event when the unit touches
 * keys living in several partitions or databases (a cross-partition barrier, see
 * services/applier/barrier.ts); empty when the unit lives in one partition.
 * `piece` splits a unit bigger than one record; the applier reassembles before applying.
 */
export interface CommandEvent {
  kind: 'command';
  pos: SourcePosition;
  db: number;
  commands: Buffer[][];
  participants: Array<{ db: number; partition: number }>;
  piece: EventPiece | null;
}

/**
 * The participants of a unit that lives in one partition: none. One list shared by all such events
 * (most of them), frozen because nothing may append to it.
 */
export const NO_PARTICIPANTS = Object.freeze([]) as unknown as CommandEvent['participants'];

/** Written every second: the source's heartbeat key and its wall-clock time, for lag. */
export interface Heartbeat {
  kind: 'heartbeat';
  pos: SourcePosition;
  db: number;
  timeMs: number;
}

/**
 * A cluster source's slots moved to the shard whose partitions receive this event (a reshard): the
 * moved keys' earlier writes are in the old owners' partitions, with positions of another
 * replication stream. Nothing after this event in its partition may be applied before every listed
 * partition has applied at least its `pos` (capture puts a position-only heartbeat there, after the
 * old owner's last write to the moved slots). Writes nothing itself. See
 * services/capture/cluster-follow.ts (the hand-off) and services/applier/barrier.ts (the wait).
 */
export interface SlotHandOff {
  kind: 'slot-handoff';
  pos: SourcePosition;
  db: number;
  after: Array<{ partition: number; pos: SourcePosition }>;
}

export type ChangeEvent = SnapshotBegin | SnapshotEnd | SnapshotKey | CommandEvent | Heartbeat | SlotHandOff;
