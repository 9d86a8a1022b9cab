/**
 * What every entry (key) has, whatever its type: the prefix opcodes (expire time, idle, freq), the
 * key, the elements decoded so far, the whole-or-pieces decision and the emission of the items.
 *
 * Whole mode keeps the entry's bytes in the cursor's buffer so they can become the RESTORE
 * payload. Once the serialized entry, or its decoded elements counted with ELEMENT_OVERHEAD each,
 * pass `maxEntryBytes` it switches to piece mode: the bytes are no longer kept, and the decoded
 * elements go out in batches of about `maxEntryBytes`.
 */
import type { RedisType, TypedValue } from '../../events/model.js';
import { RdbCursor } from './cursor.js';
import type { RdbEntry, RdbItem } from './items.js';
import { REDIS_TYPE_OF, REDIS_TYPES, type TypeTable } from './types.js';

/** Value kinds (what the TypedValue will be), by Redis type. */
export const K_STRING = 0;
export const K_LIST = 1;
export const K_SET = 2;
export const K_ZSET = 3;
export const K_HASH = 4;
export const K_STREAM = 5;
export const K_MODULE = 6;
const KIND_OF_REDIS_TYPE: Record<RedisType, number> = {
  string: K_STRING,
  list: K_LIST,
  set: K_SET,
  zset: K_ZSET,
  hash: K_HASH,
  stream: K_STREAM,
  module: K_MODULE,
};
/** Value kind by type byte. */
const KIND_OF: readonly number[] = REDIS_TYPE_OF.map((t) => (t === undefined ? -1 : KIND_OF_REDIS_TYPE[t]));

/** An entry item (the one place its fields and their order are written: one object shape). */
export function newEntry(
  db: number,
  key: Buffer,
  type: RedisType,
  encoding: string,
  expireAtMs: number | null,
  idle: number | null,
  freq: number | null,
  value: TypedValue,
  payload: Buffer | null,
  piece: { index: number; last: boolean } | null,
  offset: number,
): RdbEntry {
  return { kind: 'entry', db, key, type, encoding, expireAtMs, idle, freq, value, payload, piece, offset };
}

/**
 * Counted in a piece's size for each element, on top of its bytes: what a decoded element costs in
 * memory beyond its bytes (a Buffer view is about a hundred bytes of V8 heap, plus its slot in the
 * array). Why so much: a piece is held decoded by capture and again by the applier, and a list of
 * short elements counted by bytes alone (16 of overhead) made pieces of 300,000 elements, 30 MB of
 * heap each, which put both services over their memory bound with one 1,000,000-element list.
 */
export const ELEMENT_OVERHEAD = 112;

/** Keys of the empty collections skipped that the parser keeps for a log line (Redis logs as many). */
const EMPTY_KEYS_KEPT = 10;

export abstract class EntryReader extends RdbCursor {
  protected readonly limit: number;
  protected readonly payloads: boolean;

  protected db = 0;
  /** The type bytes of the file's flavour (`REDIS` or `VALKEY` magic), set from the header. */
  protected types: TypeTable = REDIS_TYPES;
  /** Empty collections skipped (see endValue), and the first few of their keys. */
  protected emptyCount = 0;
  protected readonly emptyKeys: Array<{ db: number; key: Buffer }> = [];
  /** Items completed by the current push. */
  protected out: RdbItem[] = [];

  // Current entry.
  protected entryStartAbs = -1; // -1: no entry in progress
  protected valueStartAbs = 0;
  protected expireAtMs: number | null = null;
  protected idle: number | null = null;
  protected freq: number | null = null;
  protected key: Buffer = Buffer.alloc(0);
  protected vType = 0;
  protected kind = K_STRING;
  protected redisType: RedisType = 'string';
  protected encoding = 'string';
  /** Progress of a value read over several steps (each type numbers its own phases). */
  protected vPhase = 0;
  /** Elements (or bytes, for a huge string) left to read in the current phase. */
  protected vCount = 0;
  protected pieceMode = false;
  protected pieceIndex = 0;
  protected items: unknown[] = [];
  protected acc = 0; // decoded bytes (plus per-element overhead) in `items`

  constructor(limit: number, verifyChecksum: boolean, payloads: boolean) {
    super(verifyChecksum);
    this.limit = limit;
    this.payloads = payloads;
  }

  /** The value of the current entry (or of its piece) from what has been decoded. */
  protected abstract makeValue(last: boolean): TypedValue;
  /** Clears what the value readers keep about the current entry. */
  protected abstract resetValue(): void;

  /** An entry's first opcode (expire time, idle, freq, or its type byte) was read at buffer index `at`. */
  protected startPrefix(at: number): void {
    if (this.entryStartAbs < 0) {
      this.entryStartAbs = this.base + at;
      this.keepFromAbs = this.entryStartAbs;
    }
  }

  /** Forgets the entry's start and prefix opcodes. */
  protected resetPrefix(): void {
    this.entryStartAbs = -1;
    this.keepFromAbs = -1;
    this.expireAtMs = null;
    this.idle = null;
    this.freq = null;
  }

  /** Type byte `t` (supported: the caller checked) and the key are read; the value starts at `pos`. */
  protected beginValue(t: number, key: Buffer): void {
    this.key = key;
    this.vType = t;
    this.redisType = REDIS_TYPE_OF[t]!;
    this.kind = KIND_OF[t];
    this.encoding = this.types.encoding[t]!;
    this.valueStartAbs = this.base + this.pos;
    this.vPhase = 0;
  }

  /** Adds one decoded element; flushes a piece first when the current one is full. */
  protected add(x: unknown, size: number): void {
    if (this.pieceMode) {
      if (this.acc >= this.limit) this.flushPiece(false);
    } else this.checkPieceSwitch();
    this.items.push(x);
    this.acc += size + ELEMENT_OVERHEAD;
  }

  /**
   * Whole → piece mode when the serialized entry has outgrown the limit, or its decoded elements
   * have (counted with ELEMENT_OVERHEAD each). Why both: a compressed RDB holds a list of a million
   * short elements in 3 MB, which decode into a million Buffers, 100 MB of heap in capture and as
   * much in the applier; such a key travels in typed pieces, like a key too big to restore whole.
   */
  protected checkPieceSwitch(): void {
    if (!this.pieceMode && (this.acc > this.limit || this.base + this.pos - this.entryStartAbs > this.limit)) {
      this.pieceMode = true;
      this.keepFromAbs = -1;
    }
  }

  /** Piece mode from the start, for a string delivered in slices (phase `phase` reads them). */
  protected enterSliceMode(phase: number): void {
    this.pieceMode = true;
    this.keepFromAbs = -1;
    this.vPhase = phase;
    this.mark = this.pos;
  }

  protected emitStringPiece(slice: Buffer, last: boolean): void {
    this.out.push(this.entryItem({ type: 'string', value: slice }, null, { index: this.pieceIndex++, last }));
  }

  /** Phase 0 of a counted value: reads the element count into `vCount` and commits. */
  protected readCountOnce(): void {
    if (this.vPhase === 0) {
      this.vCount = this.readLen();
      this.vPhase = 1;
      this.mark = this.pos;
    }
  }

  /** One element of a counted value is done: commits it. */
  protected elementDone(): void {
    this.vCount--;
    this.mark = this.pos;
  }

  protected entryItem(value: TypedValue, payload: Buffer | null, piece: { index: number; last: boolean } | null): RdbEntry {
    const { db, key, redisType, encoding, expireAtMs, idle, freq, entryStartAbs } = this;
    return newEntry(db, key, redisType, encoding, expireAtMs, idle, freq, value, payload, piece, entryStartAbs);
  }

  private flushPiece(last: boolean): void {
    this.out.push(this.entryItem(this.makeValue(last), null, { index: this.pieceIndex++, last }));
    this.items = [];
    this.acc = 0;
  }

  /**
   * The value ends at `pos`: emits the entry (or its last piece). A list, set, sorted set or hash
   * without elements is skipped instead, as Redis skips it when it loads a file (rdbLoadObject's
   * empty-key case: old versions could save such keys). Passed on, it would reach the
   * destination as a RESTORE payload Redis refuses ("Bad data format") or as an HSET/RPUSH
   * without arguments. An empty intset or zipmap, which no server writes and Redis's integrity
   * check refuses, is skipped the same way rather than stopping the sync. Streams may be empty
   * and are kept.
   */
  protected endValue(): void {
    if (this.items.length === 0 && this.pieceIndex === 0 && this.kind >= K_LIST && this.kind <= K_HASH) {
      this.emptyCount++;
      if (this.emptyKeys.length < EMPTY_KEYS_KEPT) this.emptyKeys.push({ db: this.db, key: this.key });
      return this.resetEntry();
    }
    if (this.pieceMode) {
      this.flushPiece(true);
    } else {
      const payload = this.payloads ? this.makePayload(this.vType, this.valueStartAbs - this.base, this.pos) : null;
      this.out.push(this.entryItem(this.makeValue(true), payload, null));
    }
    this.resetEntry();
  }

  /** After the last item of an entry: nothing of it is kept. */
  protected resetEntry(): void {
    this.resetPrefix();
    this.pieceMode = false;
    this.pieceIndex = 0;
    // Collections hand `items` out in their value: never reuse it (strings and modules leave it alone).
    if (this.kind !== K_STRING && this.kind !== K_MODULE) this.items = [];
    this.acc = 0;
    this.vPhase = 0;
    this.resetValue();
    this.mark = this.pos;
  }
}
