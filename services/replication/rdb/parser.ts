/**
 * Streaming RDB parser.
 *
 * Bytes are pushed in chunks of any size; every item completed by a chunk is returned at once.
 * Memory stays bounded: the parser keeps only the unparsed tail of the input, plus (while an
 * entry is small enough to be delivered whole) the entry's own bytes, which become its RESTORE
 * payload. An entry whose serialized size passes `maxEntryBytes` switches to piece mode: its
 * elements are delivered in batches of about `maxEntryBytes` decoded bytes (payload null), and a
 * huge plain or LZF string in byte slices of exactly `maxEntryBytes` (the last one shorter).
 *
 * Design: one state machine over the input buffer. Each step (a top-level record, one element
 * of a value, one listpack blob, one PEL entry…) reads everything it needs and only then commits;
 * when the buffer runs dry a step throws the NEED sentinel, the position goes back to the last
 * commit and the parser waits until enough bytes have arrived (it remembers how many, so a big
 * element is not retried on every small chunk). Re-reading a partial element therefore costs
 * O(1) (the element's header), never the element's size.
 *
 * The CRC-64 of the file is computed lazily over whole buffer regions just before they are
 * discarded, and over the tail when the EOF opcode is reached.
 *
 * Formats covered: RDB 1–12 (`REDIS0001`…`REDIS0012`) and Valkey (`VALKEY080`, `VALKEY081`…).
 * Value types 0–5, 7, 9–21, 24, 25; opcodes 244–255. Types 6 (pre-GA module), 22 and 23 (7.4
 * release-candidate hash TTLs; Valkey 9's HASH_2) and unknown bytes stop the parse with an error
 * naming the byte and its offset: an unknown type cannot be skipped safely.
 */
import { createReadStream } from 'node:fs';
import { ReplistreamError } from '../../common/errors.js';
import type { RedisType, StreamId, StreamValue, TypedValue } from '../../events/model.js';
import { DUMP_OVERHEAD, dumpPayloadWithoutTrailer } from '../dump-payload.js';
import { Crc64, crc64WriteLE, dumpTrailerLoaded, loadWindow, WINDOW_BYTES } from './crc64.js';
import { decodeIntset } from './intset.js';
import { decodeListpack, type LpValue } from './listpack.js';
import { lzfDecompress, LzfStreamDecoder } from './lzf.js';
import { decodeStreamNode, readStreamId, type StreamEntry } from './stream.js';
import { copyInto, i64leNumber, intToBuf, moduleName, parseScore, rdbError } from './util.js';
import { decodeZiplist } from './ziplist.js';
import { decodeZipmap } from './zipmap.js';

export interface RdbParserOptions {
  /**
   * Entries whose serialized value (from their first opcode to the end of the value) is bigger
   * than this are delivered in pieces. Default 8 MiB.
   */
  maxEntryBytes?: number;
  /** Check the CRC-64 stored after the EOF opcode (a stored 0 means "disabled"). Default true. */
  verifyChecksum?: boolean;
  /**
   * Build the RESTORE payload of whole entries. Default true. A consumer that only uses typed
   * values can turn it off (payload is then always null): it saves a copy and a CRC per key.
   */
  payloads?: boolean;
}

export type RdbItem =
  | { kind: 'header'; version: number; offset: number }
  | { kind: 'aux'; key: Buffer; value: Buffer }
  | { kind: 'select'; db: number }
  | { kind: 'resize'; db: number; size: number; expires: number }
  | { kind: 'function'; code: Buffer }
  | { kind: 'module-aux'; moduleId: string; raw: Buffer }
  | RdbEntry
  | { kind: 'end'; offset: number; checksum: bigint | null };

/**
 * One key (or one piece of a big key).
 * - `encoding`: the RDB encoding, named after Redis's RDB_TYPE_* constant (`list-quicklist-2`,
 *   `hash-listpack`, `zset-2`, …); plain strings are `string`, `string-int` or `string-lzf`.
 * - `offset`: file offset of the entry's first byte (its EXPIRETIME/IDLE/FREQ opcode if any,
 *   else its type byte).
 * - `idle`: LRU idle time in seconds, `freq`: LFU counter (only under LRU / LFU maxmemory
 *   policies); null when absent.
 * - `value`: Buffers are the parser's own (never views of the caller's chunks). For a whole
 *   plain string the value bytes are a view into `payload` (same memory, one copy).
 * - pieces: for a non-last stream piece, `value.stream` carries only `entries` (length 0,
 *   lastId 0-0, no groups); the last piece carries the stream's metadata and consumer groups
 *   (groups are never split). A module value in piece mode is a single piece (index 0, last)
 *   without payload. A single element bigger than the limit (one huge field, a PLAIN quicklist
 *   node) is held whole; only top-level strings are sliced.
 */
export interface RdbEntry {
  kind: 'entry';
  db: number;
  key: Buffer;
  type: RedisType;
  encoding: string;
  expireAtMs: number | null;
  idle: number | null;
  freq: number | null;
  value: TypedValue;
  payload: Buffer | null;
  piece: { index: number; last: boolean } | null;
  offset: number;
}

/** RDB value type bytes. */
export const RDB_TYPE = {
  STRING: 0,
  LIST: 1,
  SET: 2,
  ZSET: 3,
  HASH: 4,
  ZSET_2: 5,
  MODULE_PRE_GA: 6,
  MODULE_2: 7,
  HASH_ZIPMAP: 9,
  LIST_ZIPLIST: 10,
  SET_INTSET: 11,
  ZSET_ZIPLIST: 12,
  HASH_ZIPLIST: 13,
  LIST_QUICKLIST: 14,
  STREAM_LISTPACKS: 15,
  HASH_LISTPACK: 16,
  ZSET_LISTPACK: 17,
  LIST_QUICKLIST_2: 18,
  STREAM_LISTPACKS_2: 19,
  SET_LISTPACK: 20,
  STREAM_LISTPACKS_3: 21,
  HASH_METADATA_PRE_GA: 22,
  HASH_LISTPACK_EX_PRE_GA: 23,
  HASH_METADATA: 24,
  HASH_LISTPACK_EX: 25,
} as const;

/** RDB opcodes. */
export const RDB_OPCODE = {
  SLOT_INFO: 244,
  FUNCTION2: 245,
  FUNCTION_PRE_GA: 246,
  MODULE_AUX: 247,
  IDLE: 248,
  FREQ: 249,
  AUX: 250,
  RESIZEDB: 251,
  EXPIRETIME_MS: 252,
  EXPIRETIME: 253,
  SELECTDB: 254,
  EOF: 255,
} as const;

/** Redis type and encoding name of each supported value type byte. */
const TYPE_INFO: Array<readonly [RedisType, string] | undefined> = [];
TYPE_INFO[0] = ['string', 'string'];
TYPE_INFO[1] = ['list', 'list'];
TYPE_INFO[2] = ['set', 'set'];
TYPE_INFO[3] = ['zset', 'zset'];
TYPE_INFO[4] = ['hash', 'hash'];
TYPE_INFO[5] = ['zset', 'zset-2'];
TYPE_INFO[7] = ['module', 'module-2'];
TYPE_INFO[9] = ['hash', 'hash-zipmap'];
TYPE_INFO[10] = ['list', 'list-ziplist'];
TYPE_INFO[11] = ['set', 'set-intset'];
TYPE_INFO[12] = ['zset', 'zset-ziplist'];
TYPE_INFO[13] = ['hash', 'hash-ziplist'];
TYPE_INFO[14] = ['list', 'list-quicklist'];
TYPE_INFO[15] = ['stream', 'stream-listpacks'];
TYPE_INFO[16] = ['hash', 'hash-listpack'];
TYPE_INFO[17] = ['zset', 'zset-listpack'];
TYPE_INFO[18] = ['list', 'list-quicklist-2'];
TYPE_INFO[19] = ['stream', 'stream-listpacks-2'];
TYPE_INFO[20] = ['set', 'set-listpack'];
TYPE_INFO[21] = ['stream', 'stream-listpacks-3'];
TYPE_INFO[24] = ['hash', 'hash-metadata'];
TYPE_INFO[25] = ['hash', 'hash-listpack-ex'];

export const RDB_ENCODING_NAMES: ReadonlyMap<number, string> = new Map(
  TYPE_INFO.flatMap((info, t) => (info ? [[t, info[1]] as [number, string]] : [])),
);

function unsupportedType(t: number): string {
  switch (t) {
    case 6:
      return 'value type 6 (module value in the 4.0 pre-release format) is not supported';
    case 22:
      return 'value type 22 (hash with field TTLs in the 7.4 release-candidate format, or Valkey 9 HASH_2) is not supported';
    case 23:
      return 'value type 23 (listpack hash with field TTLs, 7.4 release-candidate format) is not supported';
    default:
      return `unknown value type or opcode ${t}`;
  }
}

const DEFAULT_MAX_ENTRY_BYTES = 8 * 1024 * 1024;
const MIN_BUFFER = 64 * 1024;
const TWO_POW_32 = 4294967296;
const U64_MAX = (1n << 64n) - 1n;

/** Thrown (and always caught inside the parser) when the buffer does not hold a whole step. */
const NEED: { readonly need: true } = Object.freeze({ need: true as const });

// Parser states.
const S_HEADER = 0;
const S_OPCODE = 1;
const S_VALUE = 2;
const S_CHECKSUM = 3;
const S_DONE = 4;

// Value kinds (what the TypedValue will be).
const K_STRING = 0;
const K_LIST = 1;
const K_SET = 2;
const K_ZSET = 3;
const K_HASH = 4;
const K_STREAM = 5;
const K_MODULE = 6;
const KIND_OF: Record<RedisType, number> = {
  string: K_STRING,
  list: K_LIST,
  set: K_SET,
  zset: K_ZSET,
  hash: K_HASH,
  stream: K_STREAM,
  module: K_MODULE,
};

interface StreamMeta {
  length: number;
  lastId: StreamId;
  firstId?: StreamId;
  maxDeletedId?: StreamId;
  entriesAdded?: number;
  groups: StreamValue['groups'];
}

type Group = StreamValue['groups'][number];
type Consumer = Group['consumers'][number];
type Pending = Group['pending'][number];

function toBuf(v: LpValue): Buffer {
  return v instanceof Uint8Array ? (v as Buffer) : intToBuf(v);
}

function toScore(v: LpValue): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return parseScore(v.toString('latin1'));
}

function idKey(id: StreamId): string {
  return `${id.ms}-${id.seq}`;
}

export class RdbParser {
  private readonly limit: number;
  private readonly verify: boolean;
  private readonly payloads: boolean;

  // Input buffer: valid bytes are buf[0, end); buf[0] is file offset `base`.
  private buf: Buffer = Buffer.alloc(0);
  private base = 0;
  private pos = 0;
  private end = 0;
  /** Committed position: where `pos` goes back to when a step runs out of bytes. */
  private mark = 0;
  /** Absolute offset the buffer must reach before parsing is worth retrying. */
  private needEnd = 0;
  private received = 0;

  private state = S_HEADER;
  private failure: ReplistreamError | null = null;
  private remainder: Buffer[] = [];
  private rdbLength = 0;

  private crc = new Crc64();
  private crcDone = 0; // absolute offset up to which `crc` covers the input
  /**
   * Payloads built during this push whose trailer (version, CRC) is still to be written, and the
   * buffer index of each one's value bytes: settleChecksums() does them all at once.
   */
  private unsettled: Buffer[] = [];
  private unsettledAt: number[] = [];
  private eofAbs = -1;

  private version = 0;
  private db = 0;
  private out: RdbItem[] = [];

  // Current entry.
  private entryStartAbs = -1; // -1: no entry in progress
  private keepEntry = false; // keep the entry's bytes in the buffer (whole mode)
  private valueStartAbs = 0;
  private expireAtMs: number | null = null;
  private idle: number | null = null;
  private freq: number | null = null;
  private key: Buffer = Buffer.alloc(0);
  private vType = 0;
  private kind = K_STRING;
  private redisType: RedisType = 'string';
  private encoding = 'string';
  private vPhase = 0;
  private vCount = 0;
  private pieceMode = false;
  private pieceIndex = 0;
  private items: unknown[] = [];
  private acc = 0; // decoded bytes (plus per-element overhead) in `items`
  private strValue: Buffer = Buffer.alloc(0);
  private moduleId = '';
  private minExpire = 0;
  private lzf: LzfStreamDecoder | null = null;
  // Streams.
  private smeta: StreamMeta | null = null;
  private sGroups = 0;
  private sConsumers = 0;
  private sGroup: Group | null = null;
  private sConsumer: Consumer | null = null;
  private sPel: Map<string, Pending> | null = null;

  // Last blob read by readBlob().
  private bsrc: Uint8Array = this.buf;
  private bstart = 0;
  private bend = 0;
  private boff = 0;

  constructor(opts: RdbParserOptions = {}) {
    this.limit = Math.max(1, Math.floor(opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES));
    this.verify = opts.verifyChecksum ?? true;
    this.payloads = opts.payloads ?? true;
  }

  /** True once the EOF opcode and the checksum have been consumed. */
  get done(): boolean {
    return this.state === S_DONE;
  }

  /** Bytes of the RDB consumed so far (the whole RDB once done). */
  get bytesConsumed(): number {
    return this.state === S_DONE ? this.rdbLength : this.base + this.mark;
  }

  /** The RDB version from the header (0 before it is read; 80+ for Valkey). */
  get rdbVersion(): number {
    return this.version;
  }

  /** Feeds bytes; returns every item they complete. */
  push(chunk: Buffer): RdbItem[] {
    if (this.failure) throw this.failure;
    if (this.state === S_DONE) {
      if (chunk.length > 0) this.remainder.push(Buffer.from(chunk));
      return [];
    }
    this.received += chunk.length;
    this.append(chunk);
    const out: RdbItem[] = [];
    if (this.base + this.end < this.needEnd) return out;
    this.run(out);
    return out;
  }

  /** Bytes pushed after the end of the RDB (where a replication stream continues). */
  takeRemainder(): Buffer {
    const r = this.remainder.length === 1 ? this.remainder[0] : Buffer.concat(this.remainder);
    this.remainder = [];
    return r;
  }

  /** Call at end of input: throws RDB_FORMAT if the RDB is incomplete. */
  finish(): void {
    if (this.failure) throw this.failure;
    if (this.state === S_DONE) return;
    const at = this.base + this.mark;
    const what =
      this.state === S_HEADER
        ? 'header'
        : this.state === S_CHECKSUM
          ? 'checksum'
          : this.entryStartAbs >= 0
            ? `entry starting at offset ${this.entryStartAbs}`
            : `record starting at offset ${at}`;
    this.failure = new ReplistreamError(
      'RDB_FORMAT',
      `RDB truncated at offset ${this.received}: input ended inside the ${what}`,
      { details: { offset: this.received, parsedUpTo: at } },
    );
    throw this.failure;
  }

  // ---------------------------------------------------------------------------------------------
  // Buffer management

  private append(chunk: Buffer): void {
    const n = chunk.length;
    if (this.end + n > this.buf.length || this.buf.length > 4 * MIN_BUFFER) this.makeRoom(n);
    chunk.copy(this.buf, this.end);
    this.end += n;
  }

  /** Drops consumed bytes (after checksumming them) and grows or shrinks the buffer for `n` more. */
  private makeRoom(n: number): void {
    const keep = this.keepEntry ? this.entryStartAbs - this.base : this.pos;
    const live = this.end - keep;
    const needCap = live + n;
    let cap = this.buf.length;
    if (needCap <= cap && !(cap > 4 * Math.max(needCap, MIN_BUFFER) && cap > 16 * MIN_BUFFER)) {
      // Fits: compact only when the free space at the end is too small.
      if (this.end + n <= cap) return;
      if (keep > 0) {
        if (this.verify) this.crcTo(this.base + keep);
        this.buf.copyWithin(0, keep, this.end);
      }
    } else {
      if (this.verify) this.crcTo(this.base + keep);
      cap = Math.max(MIN_BUFFER, needCap * 2);
      const nb = Buffer.allocUnsafe(cap);
      this.buf.copy(nb, 0, keep, this.end);
      this.buf = nb;
    }
    this.base += keep;
    this.pos -= keep;
    this.mark -= keep;
    this.end = live;
  }

  private crcTo(abs: number): void {
    if (abs > this.crcDone) {
      this.crc.update(this.buf, this.crcDone - this.base, abs - this.base);
      this.crcDone = abs;
    }
  }

  /**
   * Brings the file CRC up to buffer index `to` (when verifying) and writes the trailers of the
   * payloads built since the last call. Both read the same bytes, so the buffer is copied into the
   * CRC module once, a window at a time, and one call there serves each payload. Runs before the
   * items of a push are handed out, while the buffer still holds every unsettled payload's bytes
   * (they are inside the current entry or after `crcDone`, which nothing discards mid-push).
   */
  private settleChecksums(to: number): void {
    const pays = this.unsettled;
    const count = pays.length;
    const fileFrom = this.crcDone - this.base;
    const fileTo = this.verify ? to : fileFrom;
    if (count === 0 && fileTo <= fileFrom) return;
    const starts = this.unsettledAt;
    const buf = this.buf;
    const version = this.version;
    let lo = fileTo > fileFrom ? fileFrom : starts[0];
    if (count > 0 && starts[0] < lo) lo = starts[0];
    let hi = fileTo;
    if (count > 0) {
      const lastEnd = starts[count - 1] + pays[count - 1].length - DUMP_OVERHEAD;
      if (lastEnd > hi) hi = lastEnd;
    }
    let i = 0;
    for (let w0 = lo; w0 < hi; w0 += WINDOW_BYTES) {
      const w1 = Math.min(hi, w0 + WINDOW_BYTES);
      let j = i;
      while (j < count && starts[j] + pays[j].length - DUMP_OVERHEAD <= w1) j++;
      // Payloads ending here that began in an earlier window: on their own (rare; this copies
      // into the module's memory, so before this window is loaded).
      for (let k = i; k < j; k++) if (starts[k] < w0) this.settleAlone(pays[k]);
      loadWindow(buf, w0, w1);
      if (fileTo > w0 && fileFrom < w1) this.crc.updateLoaded(Math.max(w0, fileFrom), Math.min(w1, fileTo));
      for (let k = i; k < j; k++) {
        const p = pays[k];
        const n = p.length - DUMP_OVERHEAD;
        if (starts[k] >= w0) dumpTrailerLoaded(p[0], starts[k], starts[k] + n, version, p, n + 1);
      }
      i = j;
    }
    if (fileTo > fileFrom) this.crcDone = this.base + fileTo;
    if (count > 0) {
      this.unsettled = [];
      this.unsettledAt = [];
    }
  }

  /** The trailer of a payload whose bytes are all in place but its version and CRC. */
  private settleAlone(p: Buffer): void {
    const n = p.length - DUMP_OVERHEAD;
    p[n + 1] = this.version & 0xff;
    p[n + 2] = (this.version >> 8) & 0xff;
    crc64WriteLE(p, 0, n + 3, p, n + 3);
  }

  /** A payload for the value in `buf[vs, ve)`; its trailer is written by settleChecksums(). */
  private makePayload(vs: number, ve: number): Buffer {
    const p = dumpPayloadWithoutTrailer(this.vType, this.buf, vs, ve);
    this.unsettled.push(p);
    this.unsettledAt.push(vs);
    return p;
  }

  // ---------------------------------------------------------------------------------------------
  // Main loop

  private run(out: RdbItem[]): void {
    this.out = out;
    this.needEnd = 0;
    for (;;) {
      this.mark = this.pos;
      try {
        switch (this.state) {
          case S_OPCODE:
            this.parseOpcode();
            break;
          case S_VALUE:
            this.valueStep();
            break;
          case S_HEADER:
            this.parseHeader();
            break;
          case S_CHECKSUM:
            this.parseChecksum();
            break;
          default:
            this.finishDone();
            return;
        }
      } catch (e) {
        if (e === NEED) {
          this.pos = this.mark;
          this.settleChecksums(this.pos);
          return;
        }
        throw this.fail(e);
      }
    }
  }

  private fail(e: unknown): ReplistreamError {
    if (e instanceof ReplistreamError) {
      this.failure = e;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      const err = rdbError(this.base + this.pos, `internal parser error: ${msg}`, { internal: true });
      (err as { cause?: unknown }).cause = e;
      this.failure = err;
    }
    return this.failure;
  }

  private finishDone(): void {
    if (this.pos < this.end) this.remainder.push(Buffer.from(this.buf.subarray(this.pos, this.end)));
    this.mark = this.pos = this.end;
    this.buf = Buffer.alloc(0);
    this.base += this.end;
    this.pos = this.mark = this.end = 0;
  }

  private needMore(idxEnd: number): never {
    this.needEnd = this.base + idxEnd;
    throw NEED;
  }

  // ---------------------------------------------------------------------------------------------
  // Primitive reads. Each either returns with `pos` advanced, or throws NEED / RDB_FORMAT.

  private readLen(): number {
    const buf = this.buf;
    const p = this.pos;
    if (p >= this.end) this.needMore(p + 1);
    const b = buf[p];
    const t = b >> 6;
    if (t === 0) {
      this.pos = p + 1;
      return b & 0x3f;
    }
    if (t === 1) {
      if (p + 2 > this.end) this.needMore(p + 2);
      this.pos = p + 2;
      return ((b & 0x3f) << 8) | buf[p + 1];
    }
    if (b === 0x80) {
      if (p + 5 > this.end) this.needMore(p + 5);
      this.pos = p + 5;
      return ((buf[p + 1] << 24) | (buf[p + 2] << 16) | (buf[p + 3] << 8) | buf[p + 4]) >>> 0;
    }
    if (b === 0x81) {
      if (p + 9 > this.end) this.needMore(p + 9);
      const hi = ((buf[p + 1] << 24) | (buf[p + 2] << 16) | (buf[p + 3] << 8) | buf[p + 4]) >>> 0;
      const lo = ((buf[p + 5] << 24) | (buf[p + 6] << 16) | (buf[p + 7] << 8) | buf[p + 8]) >>> 0;
      if (hi > 0x1fffff) throw rdbError(this.base + p, 'length does not fit in 53 bits');
      this.pos = p + 9;
      return hi * TWO_POW_32 + lo;
    }
    if (t === 3) throw rdbError(this.base + p, `expected a length, found string encoding byte 0x${b.toString(16)}`);
    throw rdbError(this.base + p, `bad length byte 0x${b.toString(16)}`);
  }

  /** A length read as an unsigned 64-bit bigint (stream IDs, counters that may be 2^64−1). */
  private readLenBig(): bigint {
    const buf = this.buf;
    const p = this.pos;
    if (p >= this.end) this.needMore(p + 1);
    if (buf[p] === 0x81) {
      if (p + 9 > this.end) this.needMore(p + 9);
      const hi = ((buf[p + 1] << 24) | (buf[p + 2] << 16) | (buf[p + 3] << 8) | buf[p + 4]) >>> 0;
      const lo = ((buf[p + 5] << 24) | (buf[p + 6] << 16) | (buf[p + 7] << 8) | buf[p + 8]) >>> 0;
      this.pos = p + 9;
      return (BigInt(hi) << 32n) | BigInt(lo);
    }
    return BigInt(this.readLen());
  }

  /** A length that may be 64-bit; as a number (exact below 2^53). */
  private readLenApprox(): number {
    if (this.pos < this.end && this.buf[this.pos] === 0x81) return Number(this.readLenBig());
    return this.readLen();
  }

  // Results of readStringHeader() for integer and LZF strings.
  private hdrInt = 0;
  private hdrClen = 0;
  private hdrUlen = 0;

  /**
   * Reads an RDB string header at `pos`. Returns the payload length for a plain string (pos is
   * then on the payload), or -1 for an integer (value in `hdrInt`), or -2 for LZF (`hdrClen`,
   * `hdrUlen`, pos on the compressed bytes).
   */
  private readStringHeader(): number {
    const buf = this.buf;
    const p = this.pos;
    if (p >= this.end) this.needMore(p + 1);
    const b = buf[p];
    if (b < 0xc0) return this.readLen();
    switch (b & 0x3f) {
      case 0:
        if (p + 2 > this.end) this.needMore(p + 2);
        this.hdrInt = (buf[p + 1] << 24) >> 24;
        this.pos = p + 2;
        return -1;
      case 1:
        if (p + 3 > this.end) this.needMore(p + 3);
        this.hdrInt = ((buf[p + 1] | (buf[p + 2] << 8)) << 16) >> 16;
        this.pos = p + 3;
        return -1;
      case 2:
        if (p + 5 > this.end) this.needMore(p + 5);
        this.hdrInt = buf[p + 1] | (buf[p + 2] << 8) | (buf[p + 3] << 16) | (buf[p + 4] << 24);
        this.pos = p + 5;
        return -1;
      case 3: {
        this.pos = p + 1;
        this.hdrClen = this.readLen();
        this.hdrUlen = this.readLen();
        return -2;
      }
      default:
        throw rdbError(this.base + p, `unknown string encoding 0x${b.toString(16)}`);
    }
  }

  /** Reads a whole RDB string (plain, integer or LZF) into a fresh Buffer. */
  private readString(): Buffer {
    const at = this.pos;
    const len = this.readStringHeader();
    const p = this.pos;
    if (len >= 0) {
      const e = p + len;
      if (e > this.end) this.needMore(e);
      const out = Buffer.allocUnsafe(len);
      copyInto(this.buf, p, e, out, 0);
      this.pos = e;
      return out;
    }
    if (len === -1) return intToBuf(this.hdrInt);
    const e = p + this.hdrClen;
    if (e > this.end) this.needMore(e);
    const out = lzfDecompress(this.buf, p, e, this.hdrUlen, this.base + at);
    this.pos = e;
    return out;
  }

  /** Skips `n` bytes. */
  private skipBytes(n: number): void {
    if (this.pos + n > this.end) this.needMore(this.pos + n);
    this.pos += n;
  }

  /** Skips an RDB string without decoding it. */
  private skipString(): void {
    const len = this.readStringHeader();
    this.skipBytes(len >= 0 ? len : len === -1 ? 0 : this.hdrClen);
  }

  /** Reads an RDB string used as a blob (listpack, ziplist…): sets bsrc/bstart/bend/boff. */
  private readBlob(): void {
    const at = this.pos;
    const len = this.readStringHeader();
    const p = this.pos;
    this.boff = this.base + at;
    if (len >= 0) {
      const e = p + len;
      if (e > this.end) this.needMore(e);
      this.bsrc = this.buf;
      this.bstart = p;
      this.bend = e;
      this.pos = e;
    } else if (len === -1) {
      const b = intToBuf(this.hdrInt);
      this.bsrc = b;
      this.bstart = 0;
      this.bend = b.length;
    } else {
      const e = p + this.hdrClen;
      if (e > this.end) this.needMore(e);
      const b = lzfDecompress(this.buf, p, e, this.hdrUlen, this.boff);
      this.bsrc = b;
      this.bstart = 0;
      this.bend = b.length;
      this.pos = e;
    }
  }

  private blobCopy(): Buffer {
    if (this.bsrc !== this.buf) return this.bsrc.subarray(this.bstart, this.bend) as Buffer;
    return Buffer.from(this.buf.subarray(this.bstart, this.bend));
  }

  /** A double in string form (types 3 and older): 1-byte length; 253 NaN, 254 +inf, 255 −inf. */
  private readStrDouble(): number {
    const p = this.pos;
    if (p >= this.end) this.needMore(p + 1);
    const n = this.buf[p];
    if (n === 253) {
      this.pos = p + 1;
      return NaN;
    }
    if (n === 254) {
      this.pos = p + 1;
      return Infinity;
    }
    if (n === 255) {
      this.pos = p + 1;
      return -Infinity;
    }
    if (p + 1 + n > this.end) this.needMore(p + 1 + n);
    const s = this.buf.toString('latin1', p + 1, p + 1 + n);
    const v = parseScore(s);
    if (Number.isNaN(v) && !/nan/i.test(s)) throw rdbError(this.base + p, `bad double "${s}"`);
    this.pos = p + 1 + n;
    return v;
  }

  private readF64(): number {
    const p = this.pos;
    if (p + 8 > this.end) this.needMore(p + 8);
    this.pos = p + 8;
    return this.buf.readDoubleLE(p);
  }

  /** Signed little-endian int64 (millisecond times) as a number. */
  private readMs(): number {
    const p = this.pos;
    if (p + 8 > this.end) this.needMore(p + 8);
    this.pos = p + 8;
    return i64leNumber(this.buf, p);
  }

  private readU8(): number {
    const p = this.pos;
    if (p >= this.end) this.needMore(p + 1);
    this.pos = p + 1;
    return this.buf[p];
  }

  /**
   * Skips the operand of module opcode `op` (1, 2 unsigned, 3 float, 4 double, 5 string).
   * Returns false for an unknown opcode (the caller names it in its error).
   */
  private skipModuleOperand(op: number): boolean {
    switch (op) {
      case 1:
      case 2:
        this.readLenBig();
        return true;
      case 3:
        this.skipBytes(4);
        return true;
      case 4:
        this.skipBytes(8);
        return true;
      case 5:
        this.skipString();
        return true;
      default:
        return false;
    }
  }

  /** Skips module opcodes (MODULE_2 values, MODULE_AUX data) up to and including opcode 0. */
  private skipModuleOps(): void {
    for (;;) {
      const at = this.pos;
      const op = this.readLen();
      if (op === 0) return;
      if (!this.skipModuleOperand(op)) throw rdbError(this.base + at, `unknown module value opcode ${op}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Top level

  private parseHeader(): void {
    if (this.end < 9) this.needMore(9);
    const magic = this.buf.toString('latin1', 0, 9);
    let version: number;
    if (/^REDIS\d{4}$/.test(magic)) {
      version = Number(magic.slice(5));
      if (version < 1 || version > 12) {
        throw rdbError(0, `unsupported RDB version ${version} (this parser reads 1 to 12 and Valkey 80+)`);
      }
    } else if (/^VALKEY\d{3}$/.test(magic)) {
      version = Number(magic.slice(6));
      if (version < 80) throw rdbError(0, `unsupported Valkey RDB version ${version}`);
    } else {
      throw rdbError(0, `not an RDB file (header ${JSON.stringify(magic)})`);
    }
    this.version = version;
    this.pos = 9;
    this.state = S_OPCODE;
    this.out.push({ kind: 'header', version, offset: 0 });
  }

  private parseChecksum(): void {
    const p = this.pos;
    this.settleChecksums(this.eofAbs + 1 - this.base);
    if (this.version >= 5) {
      if (p + 8 > this.end) this.needMore(p + 8);
      const stored = this.buf.readBigUInt64LE(p);
      if (this.verify && stored !== 0n) {
        if (!this.crc.equalsLE(this.buf, p)) {
          throw rdbError(
            this.base + p,
            `checksum mismatch: file says ${stored.toString(16).padStart(16, '0')}, content gives ${this.crc.value
              .toString(16)
              .padStart(16, '0')}`,
          );
        }
      }
      this.pos = p + 8;
      this.out.push({ kind: 'end', offset: this.eofAbs, checksum: stored });
    } else {
      this.out.push({ kind: 'end', offset: this.eofAbs, checksum: null });
    }
    this.rdbLength = this.base + this.pos;
    this.state = S_DONE;
  }

  private startPrefix(at: number): void {
    if (this.entryStartAbs < 0) {
      this.entryStartAbs = this.base + at;
      this.keepEntry = true;
    }
  }

  private parseOpcode(): void {
    const start = this.pos;
    if (start >= this.end) this.needMore(start + 1);
    const op = this.buf[start];
    this.pos = start + 1;
    if (op < 244) {
      const info = TYPE_INFO[op];
      if (!info) throw rdbError(this.base + start, unsupportedType(op), { type: op });
      const key = this.readString();
      // Committed: the entry begins.
      this.startPrefix(start);
      this.key = key;
      this.vType = op;
      this.redisType = info[0];
      this.kind = KIND_OF[info[0]];
      this.encoding = info[1];
      this.valueStartAbs = this.base + this.pos;
      this.vPhase = 0;
      this.state = S_VALUE;
      return;
    }
    switch (op) {
      case RDB_OPCODE.EXPIRETIME_MS: {
        const ms = this.readMs();
        this.startPrefix(start);
        this.expireAtMs = ms;
        return;
      }
      case RDB_OPCODE.SELECTDB: {
        const db = this.readLen();
        this.db = db;
        this.out.push({ kind: 'select', db });
        return;
      }
      case RDB_OPCODE.RESIZEDB: {
        const size = this.readLenApprox();
        const expires = this.readLenApprox();
        this.out.push({ kind: 'resize', db: this.db, size, expires });
        return;
      }
      case RDB_OPCODE.AUX: {
        const key = this.readString();
        const value = this.readString();
        this.out.push({ kind: 'aux', key, value });
        return;
      }
      case RDB_OPCODE.EXPIRETIME: {
        const p = this.pos;
        if (p + 4 > this.end) this.needMore(p + 4);
        const s = this.buf.readInt32LE(p);
        this.pos = p + 4;
        this.startPrefix(start);
        this.expireAtMs = s * 1000;
        return;
      }
      case RDB_OPCODE.IDLE: {
        const idle = this.readLenApprox();
        this.startPrefix(start);
        this.idle = idle;
        return;
      }
      case RDB_OPCODE.FREQ: {
        const f = this.readU8();
        this.startPrefix(start);
        this.freq = f;
        return;
      }
      case RDB_OPCODE.EOF: {
        this.eofAbs = this.base + start;
        this.state = S_CHECKSUM;
        return;
      }
      case RDB_OPCODE.MODULE_AUX: {
        const id = this.readLenBig();
        const whenOpAt = this.pos;
        const whenOp = this.readLen();
        if (whenOp !== 2) throw rdbError(this.base + whenOpAt, `module aux data: bad 'when' opcode ${whenOp}`);
        this.readLen();
        this.skipModuleOps();
        this.out.push({
          kind: 'module-aux',
          moduleId: moduleName(id),
          raw: Buffer.from(this.buf.subarray(start + 1, this.pos)),
        });
        return;
      }
      case RDB_OPCODE.FUNCTION2: {
        const code = this.readString();
        this.out.push({ kind: 'function', code });
        return;
      }
      case RDB_OPCODE.FUNCTION_PRE_GA: {
        // 7.0 rc1/rc2: name, engine, [description], code; translated to the GA form
        // "#!<engine> name=<name>\n<code>".
        const name = this.readString();
        const engine = this.readString();
        const hasDesc = this.readLen();
        if (hasDesc) this.readString();
        const body = this.readString();
        const code = Buffer.concat([Buffer.from(`#!${engine.toString('latin1')} name=`, 'latin1'), name, Buffer.from('\n'), body]);
        this.out.push({ kind: 'function', code });
        return;
      }
      case RDB_OPCODE.SLOT_INFO: {
        // slot id, keys in slot, expires in slot: a cluster sizing hint, nothing to report.
        this.readLenApprox();
        this.readLenApprox();
        this.readLenApprox();
        return;
      }
      default:
        throw rdbError(this.base + start, unsupportedType(op), { type: op });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Values

  private valueStep(): void {
    switch (this.vType) {
      case 0:
        return this.stepString();
      case 1:
      case 2:
        return this.stepStrings();
      case 3:
      case 5:
        return this.stepZset();
      case 4:
        return this.stepHash();
      case 24:
        return this.stepHashMetadata();
      case 7:
        return this.stepModule();
      case 14:
      case 18:
        return this.stepQuicklist();
      case 15:
      case 19:
      case 21:
        return this.stepStream();
      default:
        return this.stepBlob();
    }
  }

  /** Adds one decoded element; flushes a piece first when the current one is full. */
  private add(x: unknown, size: number): void {
    if (this.pieceMode) {
      if (this.acc >= this.limit) this.flushPiece(false);
    } else this.checkPieceSwitch();
    this.items.push(x);
    this.acc += size + 16;
  }

  private stepString(): void {
    if (this.vPhase === 0) {
      const len = this.readStringHeader();
      const p = this.pos;
      const sizeSoFar = this.base + p - this.entryStartAbs;
      if (len === -1) {
        this.encoding = 'string-int';
        this.strValue = intToBuf(this.hdrInt);
        return this.endValue();
      }
      if (len === -2) {
        this.encoding = 'string-lzf';
        const clen = this.hdrClen;
        if (sizeSoFar + clen <= this.limit) {
          const e = p + clen;
          if (e > this.end) this.needMore(e);
          this.strValue = lzfDecompress(this.buf, p, e, this.hdrUlen, this.valueStartAbs);
          this.pos = e;
          return this.endValue();
        }
        this.lzf = new LzfStreamDecoder(clen, this.hdrUlen, this.limit, this.valueStartAbs);
        this.enterSliceMode(2);
        return;
      }
      if (sizeSoFar + len <= this.limit || len === 0) {
        const e = p + len;
        if (e > this.end) this.needMore(e);
        this.pos = e;
        if (this.payloads) {
          // The value's bytes are inside the payload: share them instead of copying twice.
          const vs = this.valueStartAbs - this.base;
          const payload = this.makePayload(vs, e);
          const at = 1 + p - vs;
          this.out.push(this.entryItem({ type: 'string', value: payload.subarray(at, at + len) }, payload, null));
          return this.resetEntry();
        }
        const v = (this.strValue = Buffer.allocUnsafe(len));
        copyInto(this.buf, p, e, v, 0);
        return this.endValue();
      }
      this.vCount = len;
      this.enterSliceMode(3);
      return;
    }
    if (this.vPhase === 2) {
      // Huge LZF string: decode what is there, emitting slices.
      const lzf = this.lzf!;
      const used = lzf.feed(this.buf, this.pos, this.end, (slice, last) => this.emitStringPiece(slice, last));
      this.pos += used;
      this.mark = this.pos;
      if (lzf.done) return this.resetEntry();
      this.needMore(this.end + 1);
    }
    // Huge plain string: slices of exactly `limit` bytes.
    while (this.vCount > 0) {
      const n = Math.min(this.vCount, this.limit);
      const p = this.pos;
      if (p + n > this.end) this.needMore(p + n);
      const slice = Buffer.allocUnsafe(n);
      this.buf.copy(slice, 0, p, p + n);
      this.pos = p + n;
      this.vCount -= n;
      this.mark = this.pos;
      this.emitStringPiece(slice, this.vCount === 0);
    }
    this.resetEntry();
  }

  private enterSliceMode(phase: number): void {
    this.pieceMode = true;
    this.keepEntry = false;
    this.vPhase = phase;
    this.mark = this.pos;
  }

  private emitStringPiece(slice: Buffer, last: boolean): void {
    this.out.push(this.entryItem({ type: 'string', value: slice }, null, { index: this.pieceIndex++, last }));
  }

  /** Phase 0 of a counted value: reads the element count into `vCount` and commits. */
  private readCountOnce(): void {
    if (this.vPhase === 0) {
      this.vCount = this.readLen();
      this.vPhase = 1;
      this.mark = this.pos;
    }
  }

  /** One element of a counted value is done: commits it. */
  private elementDone(): void {
    this.vCount--;
    this.mark = this.pos;
  }

  private stepStrings(): void {
    this.readCountOnce();
    while (this.vCount > 0) {
      const s = this.readString();
      this.add(s, s.length);
      this.elementDone();
    }
    this.endValue();
  }

  private stepZset(): void {
    this.readCountOnce();
    const binary = this.vType === 5;
    while (this.vCount > 0) {
      const member = this.readString();
      const score = binary ? this.readF64() : this.readStrDouble();
      this.add({ member, score }, member.length + 8);
      this.elementDone();
    }
    this.endValue();
  }

  private stepHash(): void {
    this.readCountOnce();
    while (this.vCount > 0) {
      const field = this.readString();
      const value = this.readString();
      this.add({ field, value, expireAtMs: null }, field.length + value.length);
      this.elementDone();
    }
    this.endValue();
  }

  /** Type 24: int64 LE minExpire, count, then (ttl, field, value); ttl 0 = none, else minExpire + ttl − 1. */
  private stepHashMetadata(): void {
    if (this.vPhase === 0) {
      const minExpire = this.readMs();
      const count = this.readLen();
      this.minExpire = minExpire;
      this.vCount = count;
      this.vPhase = 1;
      this.mark = this.pos;
    }
    while (this.vCount > 0) {
      const ttl = this.readLenApprox();
      const field = this.readString();
      const value = this.readString();
      this.add({ field, value, expireAtMs: ttl === 0 ? null : this.minExpire + ttl - 1 }, field.length + value.length);
      this.elementDone();
    }
    this.endValue();
  }

  private stepModule(): void {
    if (this.vPhase === 0) {
      const id = this.readLenBig();
      this.moduleId = moduleName(id);
      this.vPhase = 1;
      this.mark = this.pos;
    }
    // One module opcode per commit, so a long value never has to be re-walked.
    for (;;) {
      const at = this.pos;
      const op = this.readLen();
      if (op === 0) {
        this.checkPieceSwitch();
        return this.endValue();
      }
      if (!this.skipModuleOperand(op)) {
        throw rdbError(this.base + at, `unknown module value opcode ${op} in module ${this.moduleId}`);
      }
      this.checkPieceSwitch();
      this.mark = this.pos;
    }
  }

  /** Whole → piece mode when the serialized entry has outgrown the limit. */
  private checkPieceSwitch(): void {
    if (!this.pieceMode && this.base + this.pos - this.entryStartAbs > this.limit) {
      this.pieceMode = true;
      this.keepEntry = false;
    }
  }

  /** Single-blob encodings: zipmap, ziplists, intset, listpacks (and 25's minExpire first). */
  private stepBlob(): void {
    if (this.vPhase === 0 && this.vType === 25) {
      this.minExpire = this.readMs();
      this.vPhase = 1;
      this.mark = this.pos;
    }
    this.readBlob();
    const vals: LpValue[] = [];
    const { bsrc, bstart, bend, boff } = this;
    switch (this.vType) {
      case 9:
        decodeZipmap(bsrc, bstart, bend, boff, vals);
        break;
      case 10:
      case 12:
      case 13:
        decodeZiplist(bsrc, bstart, bend, boff, vals);
        break;
      case 11:
        decodeIntset(bsrc, bstart, bend, boff, vals);
        break;
      default:
        decodeListpack(bsrc, bstart, bend, boff, vals);
    }
    switch (this.kind) {
      case K_LIST:
      case K_SET:
        this.addBufs(vals);
        break;
      case K_ZSET:
        if (vals.length & 1) throw rdbError(boff, `sorted set ${this.encoding} has an odd number of elements`);
        for (let i = 0; i < vals.length; i += 2) {
          const member = toBuf(vals[i]);
          this.add({ member, score: toScore(vals[i + 1]) }, member.length + 8);
        }
        break;
      default: {
        // hash
        if (this.vType === 25) {
          if (vals.length % 3) throw rdbError(boff, 'hash-listpack-ex does not hold field/value/ttl triples');
          for (let i = 0; i < vals.length; i += 3) {
            const field = toBuf(vals[i]);
            const value = toBuf(vals[i + 1]);
            const ttl = vals[i + 2];
            if (typeof ttl !== 'number' && typeof ttl !== 'bigint') {
              throw rdbError(boff, 'hash-listpack-ex field TTL is not an integer');
            }
            this.add({ field, value, expireAtMs: ttl === 0 ? null : Number(ttl) }, field.length + value.length);
          }
        } else {
          if (vals.length & 1) throw rdbError(boff, `hash ${this.encoding} has an odd number of elements`);
          for (let i = 0; i < vals.length; i += 2) {
            const field = toBuf(vals[i]);
            const value = toBuf(vals[i + 1]);
            this.add({ field, value, expireAtMs: null }, field.length + value.length);
          }
        }
      }
    }
    this.checkPieceSwitch();
    this.endValue();
  }

  /** Adds decoded list/set elements. */
  private addBufs(vals: LpValue[]): void {
    for (let i = 0; i < vals.length; i++) {
      const b = toBuf(vals[i]);
      this.add(b, b.length);
    }
  }

  /** Types 14 (N ziplists) and 18 (N × container + blob: 1 PLAIN element, 2 PACKED listpack). */
  private stepQuicklist(): void {
    this.readCountOnce();
    const v2 = this.vType === 18;
    const vals: LpValue[] = [];
    while (this.vCount > 0) {
      let container = 2;
      if (v2) {
        const at = this.pos;
        container = this.readLen();
        if (container !== 1 && container !== 2) throw rdbError(this.base + at, `quicklist node has bad container ${container}`);
      }
      this.readBlob();
      if (container === 1) {
        const el = this.blobCopy();
        this.add(el, el.length);
      } else {
        vals.length = 0;
        if (v2) decodeListpack(this.bsrc, this.bstart, this.bend, this.boff, vals);
        else decodeZiplist(this.bsrc, this.bstart, this.bend, this.boff, vals);
        if (vals.length === 0) throw rdbError(this.boff, 'empty quicklist node');
        this.addBufs(vals);
      }
      this.checkPieceSwitch();
      this.elementDone();
    }
    this.endValue();
  }

  /** A stream ID stored as two lengths (ms, seq). */
  private readIdLens(): StreamId {
    return { ms: this.readLenBig(), seq: this.readLenBig() };
  }

  /** A raw 16-byte stream ID, after checking that `need` bytes (ID and what follows) are there. */
  private readRawId(need: number): StreamId {
    const p = this.pos;
    if (p + need > this.end) this.needMore(p + need);
    this.pos = p + 16;
    return readStreamId(this.buf, p);
  }

  private stepStream(): void {
    const t = this.vType;
    for (;;) {
      switch (this.vPhase) {
        case 0: // node count
          this.vCount = this.readLen();
          this.vPhase = 1;
          break;
        case 1: {
          // nodes: master ID (16-byte string) + listpack
          if (this.vCount === 0) {
            this.vPhase = 2;
            break;
          }
          const keyAt = this.base + this.pos;
          const nodeKey = this.readString();
          if (nodeKey.length !== 16) throw rdbError(keyAt, `stream node key is ${nodeKey.length} bytes, expected 16`);
          this.readBlob();
          const entries: StreamEntry[] = [];
          decodeStreamNode(readStreamId(nodeKey, 0), this.bsrc, this.bstart, this.bend, this.boff, entries);
          for (const e of entries) {
            let size = 16;
            for (const f of e.fields) size += f.length;
            this.add(e, size);
          }
          this.checkPieceSwitch();
          this.vCount--;
          break;
        }
        case 2: {
          // metadata
          const length = this.readLenApprox();
          const lastId = this.readIdLens();
          const meta: StreamMeta = { length, lastId, groups: [] };
          if (t >= 19) {
            meta.firstId = this.readIdLens();
            meta.maxDeletedId = this.readIdLens();
            meta.entriesAdded = this.readLenApprox();
          }
          this.smeta = meta;
          this.vPhase = 3;
          break;
        }
        case 3:
          this.sGroups = this.readLen();
          this.vPhase = 4;
          break;
        case 4: {
          // group header
          if (this.sGroups === 0) {
            this.checkPieceSwitch();
            return this.endValue();
          }
          const name = this.readString();
          const lastId = this.readIdLens();
          let entriesRead: bigint | null = null;
          if (t >= 19) entriesRead = this.readLenBig();
          const pel = this.readLen();
          const group: Group = { name, lastId, pending: [], consumers: [] };
          if (entriesRead !== null && entriesRead !== U64_MAX) group.entriesRead = Number(entriesRead);
          this.smeta!.groups.push(group);
          this.sGroup = group;
          this.sPel = new Map();
          this.vCount = pel;
          this.vPhase = 5;
          break;
        }
        case 5: {
          // group PEL: 16-byte ID, int64 LE delivery time, delivery count
          if (this.vCount === 0) {
            this.vPhase = 6;
            break;
          }
          const id = this.readRawId(24);
          const deliveryTimeMs = this.readMs();
          const deliveryCount = this.readLenApprox();
          const pe: Pending = { id, deliveryTimeMs, deliveryCount };
          this.sGroup!.pending.push(pe);
          this.sPel!.set(idKey(id), pe);
          this.vCount--;
          break;
        }
        case 6:
          this.sConsumers = this.readLen();
          this.vPhase = 7;
          break;
        case 7: {
          // consumer header
          if (this.sConsumers === 0) {
            this.sGroups--;
            this.vPhase = 4;
            break;
          }
          const name = this.readString();
          const seenTimeMs = this.readMs();
          const consumer: Consumer = { name, seenTimeMs, pending: [] };
          if (t >= 21) consumer.activeTimeMs = this.readMs();
          const pel = this.readLen();
          this.sGroup!.consumers.push(consumer);
          this.sConsumer = consumer;
          this.vCount = pel;
          this.vPhase = 8;
          break;
        }
        case 8: {
          // consumer PEL: 16-byte IDs
          if (this.vCount === 0) {
            this.sConsumers--;
            this.vPhase = 7;
            break;
          }
          const id = this.readRawId(16);
          this.sConsumer!.pending.push(id);
          const pe = this.sPel!.get(idKey(id));
          if (pe) pe.consumer = this.sConsumer!.name;
          this.vCount--;
          break;
        }
      }
      // Big consumer groups count too: stop retaining the entry's bytes once it is too big.
      this.checkPieceSwitch();
      this.mark = this.pos;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Emission

  private makeValue(last: boolean): TypedValue {
    const items = this.items;
    switch (this.kind) {
      case K_STRING:
        return { type: 'string', value: this.strValue };
      case K_LIST:
        return { type: 'list', items: items as Buffer[] };
      case K_SET:
        return { type: 'set', members: items as Buffer[] };
      case K_ZSET:
        return { type: 'zset', entries: items as Array<{ member: Buffer; score: number }> };
      case K_HASH:
        return { type: 'hash', entries: items as Array<{ field: Buffer; value: Buffer; expireAtMs: number | null }> };
      case K_STREAM: {
        const entries = items as StreamEntry[];
        if (!last || !this.smeta) return { type: 'stream', stream: { entries, length: 0, lastId: { ms: 0n, seq: 0n }, groups: [] } };
        const m = this.smeta;
        const stream: StreamValue = { entries, length: m.length, lastId: m.lastId, groups: m.groups };
        if (m.firstId) stream.firstId = m.firstId;
        if (m.maxDeletedId) stream.maxDeletedId = m.maxDeletedId;
        if (m.entriesAdded !== undefined) stream.entriesAdded = m.entriesAdded;
        return { type: 'stream', stream };
      }
      default:
        return { type: 'module', moduleId: this.moduleId };
    }
  }

  private entryItem(value: TypedValue, payload: Buffer | null, piece: { index: number; last: boolean } | null): RdbEntry {
    return {
      kind: 'entry',
      db: this.db,
      key: this.key,
      type: this.redisType,
      encoding: this.encoding,
      expireAtMs: this.expireAtMs,
      idle: this.idle,
      freq: this.freq,
      value,
      payload,
      piece,
      offset: this.entryStartAbs,
    };
  }

  private flushPiece(last: boolean): void {
    this.out.push(this.entryItem(this.makeValue(last), null, { index: this.pieceIndex++, last }));
    this.items = [];
    this.acc = 0;
  }

  private endValue(): void {
    if (this.pieceMode) {
      this.flushPiece(true);
    } else {
      const vs = this.valueStartAbs - this.base;
      const payload = this.payloads ? this.makePayload(vs, this.pos) : null;
      this.out.push(this.entryItem(this.makeValue(true), payload, null));
    }
    this.resetEntry();
  }

  private resetEntry(): void {
    this.state = S_OPCODE;
    this.entryStartAbs = -1;
    this.keepEntry = false;
    this.pieceMode = false;
    this.pieceIndex = 0;
    // Collections hand `items` out in their value: never reuse it (strings and modules leave it alone).
    if (this.kind !== K_STRING && this.kind !== K_MODULE) this.items = [];
    this.acc = 0;
    this.expireAtMs = null;
    this.idle = null;
    this.freq = null;
    this.vPhase = 0;
    this.lzf = null;
    this.smeta = null;
    this.sGroup = null;
    this.sConsumer = null;
    this.sPel = null;
    this.mark = this.pos;
  }
}

/**
 * Input chunks are fed to the parser at most this many bytes at a time, so that the items of one
 * push are consumed (and become garbage) before the next ones are made: with small keys a 1 MiB
 * push creates tens of thousands of objects at once, which outlive a young-generation GC and get
 * copied, costing more than the parsing itself.
 */
const FEED_BYTES = 64 * 1024;

/** Parses an RDB from a stream of chunks. Stops reading at the end of the RDB. */
export async function* parseRdbStream(src: AsyncIterable<Buffer>, opts?: RdbParserOptions): AsyncGenerator<RdbItem> {
  const parser = new RdbParser(opts);
  for await (const chunk of src) {
    for (let off = 0; off < chunk.length; off += FEED_BYTES) {
      const items = parser.push(off === 0 && chunk.length <= FEED_BYTES ? chunk : chunk.subarray(off, off + FEED_BYTES));
      for (let i = 0; i < items.length; i++) yield items[i];
      if (parser.done) return;
    }
  }
  parser.finish();
}

/** Parses an RDB file. */
export function parseRdbFile(path: string, opts?: RdbParserOptions): AsyncGenerator<RdbItem> {
  return parseRdbStream(createReadStream(path, { highWaterMark: 1 << 20 }), opts);
}
