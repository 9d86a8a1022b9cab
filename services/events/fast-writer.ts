/**
 * A hand-written Avro writer for the two events that make up nearly all of a topic: snapshot keys
 * (string, list, set, zset and hash values) and commands. It writes exactly the bytes avsc writes
 * for the same event (tests compare them for every event shape): Avro's binary encoding is fixed
 * by the schema, and this follows the schema's field and branch order, taken from the avsc types
 * at start-up (`FastLayout`), not hard-coded.
 *
 * Why: avsc's generic writers cost a call per field through union, array and record writers, and
 * re-encode the position's replid (the same 40 characters in every event) each time. Here an
 * event is measured (`size`, which also validates every field the writer relies on), then written
 * in one pass into room the caller reserved (`write`).
 *
 * Anything else (snapshot-begin/end, heartbeats, stream and module values) and any value outside
 * what the schema accepts makes `size` return -1: the caller then encodes the event with avsc,
 * which writes it or names the invalid field.
 */
import { longLen, writeLong } from './avro-varint.js';
import { packedArgsOf, packedEnd, packedStart } from './packed-args.js';
import type { ChangeEvent, CommandEvent, EventPiece, SnapshotKey, SourcePosition, TypedValue } from './model.js';

/** Where things are in the schema (union branch and enum indexes, already zigzag-encoded: one byte each). */
export interface FastLayout {
  /** Branch of the event union. */
  snapshotKeyTag: number;
  commandTag: number;
  /** RedisType enum symbol → its index byte (an object without prototype). */
  typeIndex: Record<string, number>;
  /** Branch of SnapshotKey.value per typed value kind (null is branch 0). */
  valueTag: { string: number; list: number; set: number; zset: number; hash: number };
}

const MAX_SAFE_LONG = 9007199254740990; // avsc's bound (isSafeLong)
const EMPTY = Buffer.alloc(0);

const isLong = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= -MAX_SAFE_LONG && n <= MAX_SAFE_LONG;
const isInt = (n: unknown): n is number => typeof n === 'number' && n === (n | 0);

function writeBytes(buf: Buffer, p: number, b: Buffer): number {
  const len = b.length;
  p = writeLong(buf, p, len);
  if (len < 32) for (let i = 0; i < len; i++) buf[p + i] = b[i];
  else buf.set(b, p);
  return p + len;
}

/** Encoded size of `array<bytes>`, or -1 when an item is not a Buffer. */
function bufsLen(list: unknown): number {
  if (!Array.isArray(list)) return -1;
  const n = list.length;
  if (n === 0) return 1;
  let size = longLen(n) + 1;
  const packed = packedArgsOf(list);
  if (packed) {
    // packed arguments (packed-args.ts): sized from their storage, no view made of each
    for (let i = 0; i < n; i++) {
      const len = packedEnd(packed, i) - packedStart(packed, i);
      size += longLen(len) + len;
    }
    return size;
  }
  for (let i = 0; i < n; i++) {
    const b = list[i];
    if (!Buffer.isBuffer(b)) return -1;
    size += longLen(b.length) + b.length;
  }
  return size;
}

function writeBufs(buf: Buffer, p: number, list: Buffer[]): number {
  const n = list.length;
  const packed = n > 0 ? packedArgsOf(list) : null;
  if (packed) {
    p = writeLong(buf, p, n);
    for (let i = 0; i < n; i++) {
      const from = packedStart(packed, i);
      const len = packedEnd(packed, i) - from;
      p = writeLong(buf, p, len);
      p += packed.data.copy(buf, p, from, from + len);
    }
  } else if (n > 0) {
    p = writeLong(buf, p, n);
    for (let i = 0; i < n; i++) p = writeBytes(buf, p, list[i]);
  }
  buf[p++] = 0;
  return p;
}

export class FastWriter {
  private replid: string | null = null;
  private replidBytes: Buffer = EMPTY;

  constructor(private readonly layout: FastLayout) {}

  /** The encoded size of `e` (union branch included), or -1 when `e` is not for this writer. */
  size(e: ChangeEvent): number {
    if (e.kind === 'snapshot-key') return this.keySize(e);
    if (e.kind === 'command') return this.commandSize(e);
    return -1;
  }

  /** Writes `e` (measured by `size`, which returned ≥ 0) at `p`; `buf` has room for it. Returns the end. */
  write(e: ChangeEvent, buf: Buffer, p: number): number {
    return e.kind === 'snapshot-key' ? this.writeKey(e, buf, p) : this.writeCommand(e as CommandEvent, buf, p);
  }

  // ----- parts

  private posSize(pos: SourcePosition): number {
    if (pos === null || typeof pos !== 'object') return -1;
    const { epoch, offset, seq, replid } = pos;
    if (!isLong(epoch) || !isLong(offset) || !isLong(seq) || typeof replid !== 'string') return -1;
    if (replid !== this.replid) {
      this.replidBytes = Buffer.from(replid, 'utf8');
      this.replid = replid;
    }
    const r = this.replidBytes.length;
    return longLen(epoch) + longLen(offset) + longLen(seq) + longLen(r) + r;
  }

  private writePos(pos: SourcePosition, buf: Buffer, p: number): number {
    p = writeLong(buf, p, pos.epoch);
    p = writeLong(buf, p, pos.offset);
    p = writeLong(buf, p, pos.seq);
    if (pos.replid !== this.replid) {
      this.replidBytes = Buffer.from(pos.replid, 'utf8');
      this.replid = pos.replid;
    }
    return writeBytes(buf, p, this.replidBytes);
  }

  private static pieceSize(piece: EventPiece | null): number {
    if (piece === null) return 1;
    if (typeof piece !== 'object' || !isInt(piece.index) || typeof piece.last !== 'boolean') return -1;
    return 1 + longLen(piece.index) + 2;
  }

  private static writePiece(piece: EventPiece | null, buf: Buffer, p: number): number {
    if (piece === null) {
      buf[p++] = 0;
      return p;
    }
    buf[p++] = 2;
    p = writeLong(buf, p, piece.index);
    buf[p++] = piece.last ? 1 : 0;
    buf[p++] = piece.continued === true ? 1 : 0;
    return p;
  }

  // ----- snapshot keys

  private keySize(e: SnapshotKey): number {
    const pos = this.posSize(e.pos);
    if (pos < 0 || !isInt(e.db) || !Buffer.isBuffer(e.key)) return -1;
    if (typeof e.type !== 'string' || this.layout.typeIndex[e.type] === undefined) return -1;
    let size = 1 + pos + longLen(e.db) + longLen(e.key.length) + e.key.length + 1;
    const exp = e.expireAtMs;
    if (exp === null) size += 1;
    else if (isLong(exp)) size += 1 + longLen(exp);
    else return -1;
    const payload = e.payload;
    if (payload === null) size += 1;
    else if (Buffer.isBuffer(payload)) size += 1 + longLen(payload.length) + payload.length;
    else return -1;
    const value = FastWriter.valueSize(e.value);
    if (value < 0) return -1;
    const piece = FastWriter.pieceSize(e.piece);
    if (piece < 0) return -1;
    const append = e.append;
    if (append !== undefined && append !== null && typeof append !== 'boolean') return -1;
    return size + value + piece + (typeof append === 'boolean' ? 2 : 1);
  }

  private static valueSize(v: TypedValue | null): number {
    if (v === null) return 1;
    if (typeof v !== 'object') return -1;
    switch (v.type) {
      case 'string':
        return Buffer.isBuffer(v.value) ? 1 + longLen(v.value.length) + v.value.length : -1;
      case 'list': {
        const n = bufsLen(v.items);
        return n < 0 ? -1 : 1 + n;
      }
      case 'set': {
        const n = bufsLen(v.members);
        return n < 0 ? -1 : 1 + n;
      }
      case 'zset': {
        const entries = v.entries;
        if (!Array.isArray(entries)) return -1;
        const n = entries.length;
        let size = 2 + (n > 0 ? longLen(n) : 0);
        for (let i = 0; i < n; i++) {
          const x = entries[i];
          if (x === null || typeof x !== 'object' || !Buffer.isBuffer(x.member) || typeof x.score !== 'number') return -1;
          size += longLen(x.member.length) + x.member.length + 8;
        }
        return size;
      }
      case 'hash': {
        const entries = v.entries;
        if (!Array.isArray(entries)) return -1;
        const n = entries.length;
        let size = 2 + (n > 0 ? longLen(n) : 0);
        for (let i = 0; i < n; i++) {
          const x = entries[i];
          if (x === null || typeof x !== 'object' || !Buffer.isBuffer(x.field) || !Buffer.isBuffer(x.value)) return -1;
          size += longLen(x.field.length) + x.field.length + longLen(x.value.length) + x.value.length;
          const exp = x.expireAtMs;
          if (exp === null || exp === undefined) size += 1;
          else if (isLong(exp)) size += 1 + longLen(exp);
          else return -1;
        }
        return size;
      }
      default:
        return -1; // stream, module: avsc
    }
  }

  private writeKey(e: SnapshotKey, buf: Buffer, p: number): number {
    buf[p++] = this.layout.snapshotKeyTag;
    p = this.writePos(e.pos, buf, p);
    p = writeLong(buf, p, e.db);
    p = writeBytes(buf, p, e.key);
    buf[p++] = this.layout.typeIndex[e.type];
    if (e.expireAtMs === null) buf[p++] = 0;
    else {
      buf[p++] = 2;
      p = writeLong(buf, p, e.expireAtMs);
    }
    if (e.payload === null) buf[p++] = 0;
    else {
      buf[p++] = 2;
      p = writeBytes(buf, p, e.payload);
    }
    p = this.writeValue(e.value, buf, p);
    p = FastWriter.writePiece(e.piece, buf, p);
    if (typeof e.append === 'boolean') {
      buf[p++] = 2;
      buf[p++] = e.append ? 1 : 0;
    } else buf[p++] = 0;
    return p;
  }

  private writeValue(v: TypedValue | null, buf: Buffer, p: number): number {
    if (v === null) {
      buf[p++] = 0;
      return p;
    }
    const tags = this.layout.valueTag;
    switch (v.type) {
      case 'string':
        buf[p++] = tags.string;
        return writeBytes(buf, p, v.value);
      case 'list':
        buf[p++] = tags.list;
        return writeBufs(buf, p, v.items);
      case 'set':
        buf[p++] = tags.set;
        return writeBufs(buf, p, v.members);
      case 'zset': {
        buf[p++] = tags.zset;
        const entries = v.entries;
        const n = entries.length;
        if (n > 0) {
          p = writeLong(buf, p, n);
          for (let i = 0; i < n; i++) {
            p = writeBytes(buf, p, entries[i].member);
            buf.writeDoubleLE(entries[i].score, p);
            p += 8;
          }
        }
        buf[p++] = 0;
        return p;
      }
      case 'hash': {
        buf[p++] = tags.hash;
        const entries = v.entries;
        const n = entries.length;
        if (n > 0) {
          p = writeLong(buf, p, n);
          for (let i = 0; i < n; i++) {
            const x = entries[i];
            p = writeBytes(buf, p, x.field);
            p = writeBytes(buf, p, x.value);
            if (x.expireAtMs === null || x.expireAtMs === undefined) buf[p++] = 0;
            else {
              buf[p++] = 2;
              p = writeLong(buf, p, x.expireAtMs);
            }
          }
        }
        buf[p++] = 0;
        return p;
      }
      default:
        throw new Error(`fast writer: ${v.type} value not measured`);
    }
  }

  // ----- commands

  private commandSize(e: CommandEvent): number {
    const pos = this.posSize(e.pos);
    if (pos < 0 || !isInt(e.db)) return -1;
    const commands = e.commands;
    if (!Array.isArray(commands)) return -1;
    const n = commands.length;
    let size = 1 + pos + longLen(e.db) + 1 + (n > 0 ? longLen(n) : 0);
    for (let i = 0; i < n; i++) {
      const args = bufsLen(commands[i]);
      if (args < 0) return -1;
      size += args;
    }
    const parts = e.participants;
    if (!Array.isArray(parts)) return -1;
    const m = parts.length;
    size += 1 + (m > 0 ? longLen(m) : 0);
    for (let i = 0; i < m; i++) {
      const x = parts[i];
      if (x === null || typeof x !== 'object' || !isInt(x.db) || !isInt(x.partition)) return -1;
      size += longLen(x.db) + longLen(x.partition);
    }
    const piece = FastWriter.pieceSize(e.piece);
    return piece < 0 ? -1 : size + piece;
  }

  private writeCommand(e: CommandEvent, buf: Buffer, p: number): number {
    buf[p++] = this.layout.commandTag;
    p = this.writePos(e.pos, buf, p);
    p = writeLong(buf, p, e.db);
    const commands = e.commands;
    const n = commands.length;
    if (n > 0) {
      p = writeLong(buf, p, n);
      for (let i = 0; i < n; i++) p = writeBufs(buf, p, commands[i]);
    }
    buf[p++] = 0;
    const parts = e.participants;
    const m = parts.length;
    if (m > 0) {
      p = writeLong(buf, p, m);
      for (let i = 0; i < m; i++) {
        p = writeLong(buf, p, parts[i].db);
        p = writeLong(buf, p, parts[i].partition);
      }
    }
    buf[p++] = 0;
    return FastWriter.writePiece(e.piece, buf, p);
  }
}
