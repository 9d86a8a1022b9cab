/**
 * Where a key of the RDB snapshot becomes a change event. Pure: the parser's `entry` items in,
 * SnapshotKey events out, each with its position (epoch, snapshot offset, sequence).
 *
 * A big key that the parser delivers in parts (its value over the parser's bound) becomes several
 * events: the first replaces the key at the destination, the following ones carry `append: true`
 * and add their elements. Each part has its own sequence number, so a duplicate part is
 * recognised like any other duplicate.
 */
import type { RedisType, SnapshotKey, TypedValue } from '../events/model.js';

export type SnapshotFormat = 'both' | 'restore' | 'typed';

export interface SnapshotEntry {
  db: number;
  key: Buffer;
  type: RedisType;
  expireAtMs: number | null;
  value: TypedValue;
  payload: Buffer | null;
  piece: { index: number; last: boolean } | null;
}

export interface SnapshotContext {
  epoch: number;
  offset: number;
  replid: string;
  format: SnapshotFormat;
}

export function snapshotKeyEvent(entry: SnapshotEntry, seq: number, ctx: SnapshotContext): SnapshotKey {
  // A payload is only usable whole; parts of a big key always travel as typed elements.
  const payload = entry.piece === null && ctx.format !== 'typed' ? entry.payload : null;
  const value = ctx.format === 'restore' && payload !== null ? null : entry.value;
  return {
    kind: 'snapshot-key',
    pos: { epoch: ctx.epoch, offset: ctx.offset, seq, replid: ctx.replid },
    db: entry.db,
    key: entry.key,
    type: entry.type,
    expireAtMs: entry.expireAtMs,
    payload,
    value,
    piece: null,
    append: entry.piece !== null && entry.piece.index > 0,
  };
}
