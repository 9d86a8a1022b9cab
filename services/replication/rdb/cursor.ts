/**
 * The byte cursor under the RDB parser: it holds the unparsed input, reads RDB primitives
 * (lengths, strings, blobs, numbers) at `pos`, and checksums the input (the file CRC and the
 * RESTORE payloads' CRCs).
 *
 * Reads are all-or-nothing: a read that runs out of bytes throws the NEED sentinel, and the
 * caller (the parser's step loop) puts `pos` back to `mark`, the last committed position, and
 * waits for more input. `needEnd` remembers how far the buffer must reach before a retry is worth
 * it, so a big element is not re-read on every small chunk; a retry re-reads only the element's
 * header (O(1)), never its bytes.
 *
 * The buffer keeps bytes from `keepFromAbs` (the start of an entry whose bytes become its
 * payload) or else from `pos`; older bytes are dropped when room is needed.
 *
 * Checksums are settled at the end of each push (settleChecksums): windows of the buffer are
 * copied into the CRC module (crc64.ts), which continues the file CRC and writes the bytes of the
 * RESTORE payloads handed out during the push (slab Buffers, see slab.ts, filled before the push
 * returns).
 */
import type { StreamId } from '../../events/model.js';
import { DUMP_OVERHEAD } from '../dump-payload.js';
import { BATCH_BYTES, BATCH_PAYLOADS, batchPayload, buildBatch, clearBatch, Crc64, crc64WriteLE, loadWindow, WINDOW_BYTES } from './crc64.js';
import { lzfDecompress } from './lzf.js';
import { Slab } from './slab.js';
import { readStreamId } from './stream.js';
import { i64leNumber, intToBuf, parseScore, rdbError } from './util.js';

/** Thrown by reads (and always caught by the parser) when the buffer does not hold a whole step. */
export const NEED: { readonly need: true } = Object.freeze({ need: true as const });

const MIN_BUFFER = 64 * 1024;
/**
 * Below this many bytes a byte loop copies out of the buffer faster than TypedArray#set, which
 * needs a view of the source (~45 ns for a Uint8Array over the cached ArrayBuffer; Buffer#subarray
 * costs twice that).
 */
const SMALL_COPY = 40;
const TWO_POW_32 = 4294967296;

export class RdbCursor {
  protected readonly verify: boolean;

  // Input buffer: valid bytes are buf[0, end); buf[0] is file offset `base`. Set with setBuffer().
  protected buf: Buffer = Buffer.alloc(0);
  private bufMemory: ArrayBufferLike = this.buf.buffer;
  private bufOffset = 0;
  protected base = 0;
  protected pos = 0;
  protected end = 0;
  /** Committed position: where `pos` goes back to when a step runs out of bytes. */
  protected mark = 0;
  /** Absolute offset the buffer must reach before parsing is worth retrying. */
  protected needEnd = 0;
  /** Absolute offset from which bytes must be kept (an entry that will be a payload), or -1. */
  protected keepFromAbs = -1;

  /** Memory for the Buffers handed out (see slab.ts); payloads have their own, see settleChecksums(). */
  protected readonly slab = new Slab();
  protected readonly payloadSlab = new Slab();

  /** RDB version from the header: DUMP payloads carry it. */
  protected version = 0;

  private crc = new Crc64();
  private crcDone = 0; // absolute offset up to which `crc` covers the input
  /**
   * Payloads handed out during this push whose bytes are still to be written (settleChecksums()
   * builds them all at once): the Buffer, its offset in its slab's memory, and its type byte and
   * value as buffer indexes. Arrays kept across pushes, `pendingCount` long.
   */
  private pendingCount = 0;
  private readonly pending: Buffer[] = [];
  private readonly pendingMemory: ArrayBuffer[] = [];
  private readonly pendingOffset: number[] = [];
  private readonly pendingType: number[] = [];
  private readonly pendingStart: number[] = [];
  private readonly pendingEnd: number[] = [];

  // Last blob read by readBlob().
  protected bsrc: Uint8Array = this.buf;
  protected bstart = 0;
  protected bend = 0;
  protected boff = 0;

  // Results of readStringHeader() for integer and LZF strings.
  protected hdrInt = 0;
  protected hdrClen = 0;
  protected hdrUlen = 0;

  constructor(verifyChecksum: boolean) {
    this.verify = verifyChecksum;
  }

  protected setBuffer(b: Buffer): void {
    this.buf = b;
    this.bufMemory = b.buffer;
    this.bufOffset = b.byteOffset;
  }

  /** Copies `buf[s, e)` to `dst[at]`. */
  protected copyFromBuf(s: number, e: number, dst: Uint8Array, at: number): void {
    const n = e - s;
    if (n < SMALL_COPY) {
      const buf = this.buf;
      for (let i = 0; i < n; i++) dst[at + i] = buf[s + i];
    } else {
      dst.set(new Uint8Array(this.bufMemory, this.bufOffset + s, n), at);
    }
  }

  /** `buf[s, e)` in a fresh Buffer. */
  protected bufCopy(s: number, e: number): Buffer {
    const out = this.slab.alloc(e - s);
    this.copyFromBuf(s, e, out, 0);
    return out;
  }

  protected needMore(idxEnd: number): never {
    this.needEnd = this.base + idxEnd;
    throw NEED;
  }

  // ---------------------------------------------------------------------------------------------
  // Buffer and checksums

  protected append(chunk: Buffer): void {
    const n = chunk.length;
    if (this.end + n > this.buf.length || this.buf.length > 4 * MIN_BUFFER) this.makeRoom(n);
    chunk.copy(this.buf, this.end);
    this.end += n;
  }

  /** Drops consumed bytes (after checksumming them) and grows or shrinks the buffer for `n` more. */
  private makeRoom(n: number): void {
    const keep = this.keepFromAbs >= 0 ? this.keepFromAbs - this.base : this.pos;
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
      this.setBuffer(nb);
    }
    this.base += keep;
    this.pos -= keep;
    this.mark -= keep;
    this.end = live;
  }

  /** The CRC of the input up to where settleChecksums() brought it. */
  protected get fileChecksum(): bigint {
    return this.crc.value;
  }

  private crcTo(abs: number): void {
    if (abs > this.crcDone) {
      this.crc.update(this.buf, this.crcDone - this.base, abs - this.base);
      this.crcDone = abs;
    }
  }

  /**
   * Brings the file CRC up to buffer index `to` (when verifying) and writes the bytes of the
   * payloads handed out since the last call. Both read the same bytes, so the buffer is copied into
   * the CRC module once, a window at a time; the module checksums the file in one call and builds
   * a batch of payloads (value copy, version, CRC) in another, and the batch is copied to the
   * payloads' slab in one go. Runs before the items of a push are handed out, while the buffer
   * still holds every pending payload's bytes (they are inside the current entry or after
   * `crcDone`, which nothing discards mid-push).
   */
  protected settleChecksums(to: number): void {
    const count = this.pendingCount;
    const fileFrom = this.crcDone - this.base;
    const file = this.verify && to > fileFrom;
    if (count === 0 && !file) return;
    const starts = this.pendingStart;
    const ends = this.pendingEnd;
    let lo = file ? fileFrom : starts[0];
    if (count > 0 && starts[0] < lo) lo = starts[0];
    let hi = file ? to : lo;
    if (count > 0 && ends[count - 1] > hi) hi = ends[count - 1];
    let i = 0;
    for (let w0 = lo; w0 < hi; w0 += WINDOW_BYTES) {
      const w1 = Math.min(hi, w0 + WINDOW_BYTES);
      let j = i;
      while (j < count && ends[j] <= w1) j++;
      // Payloads ending in this window that began in an earlier one: on their own, before the
      // window is loaded (that uses the module's memory too). Rare.
      for (let k = i; k < j; k++) {
        if (starts[k] < w0) {
          this.buildPayload(this.pending[k], this.pendingType[k], starts[k], ends[k]);
          starts[k] = -1;
        }
      }
      loadWindow(this.buf, w0, w1);
      this.buildPending(i, j, file ? Math.max(w0, fileFrom) : -1, Math.min(w1, to));
      i = j;
    }
    if (file) this.crcDone = this.base + to;
    this.pending.fill(undefined as unknown as Buffer, 0, count);
    this.pendingMemory.fill(undefined as unknown as ArrayBuffer, 0, count);
    this.pendingCount = 0;
  }

  /**
   * Builds pending payloads [i, j) (those not built alone) from the loaded window, in batches,
   * and brings the file CRC from `fileAt` (-1: not verifying) to `fileTo` on the way.
   */
  private buildPending(i: number, j: number, fileAt: number, fileTo: number): void {
    let k = i;
    if (fileAt >= 0) {
      // Values that began before the file position (an entry read over several pushes: the file
      // CRC has passed its start) are built apart from it.
      const starts = this.pendingStart;
      while (k < j && starts[k] < fileAt) k++;
      this.buildBatches(i, k, null, 0, 0);
      this.buildBatches(k, j, this.crc, fileAt, fileTo);
    } else {
      this.buildBatches(i, j, null, 0, 0);
    }
  }

  /** Batches of buildPending; with `file`, the values lie in [fileAt, fileTo). */
  private buildBatches(i: number, j: number, file: Crc64 | null, fileAt: number, fileTo: number): void {
    const starts = this.pendingStart;
    const ends = this.pendingEnd;
    const offsets = this.pendingOffset;
    let k = i;
    for (;;) {
      while (k < j && starts[k] < 0) k++;
      if (k >= j) break;
      // One batch: payloads of the same slab, within BATCH_BYTES of the first one.
      clearBatch();
      const memory = this.pendingMemory[k];
      const base = offsets[k];
      let span = 0;
      let last = k;
      for (let n = 0; k < j && n < BATCH_PAYLOADS; k++) {
        if (starts[k] < 0) continue;
        const end = offsets[k] - base + ends[k] - starts[k] + DUMP_OVERHEAD;
        if (this.pendingMemory[k] !== memory || end > BATCH_BYTES) break;
        batchPayload(this.pendingType[k], starts[k], ends[k], offsets[k] - base);
        span = end;
        last = k;
        n++;
      }
      // The file goes to this batch's last value, or to `fileTo` with the last batch.
      let batchFileTo = fileTo;
      for (let m = k; m < j; m++) {
        if (starts[m] >= 0) {
          batchFileTo = ends[last];
          break;
        }
      }
      const built = buildBatch(this.version, span, file, fileAt, batchFileTo);
      fileAt = batchFileTo;
      new Uint8Array(memory, base, span).set(built);
    }
    if (file && fileTo > fileAt) file.updateLoaded(fileAt, fileTo);
  }

  /** Writes a payload's bytes (type, value `buf[vs, ve)`, version, CRC) into `p`. */
  private buildPayload(p: Buffer, type: number, vs: number, ve: number): void {
    const n = ve - vs;
    p[0] = type;
    this.copyFromBuf(vs, ve, p, 1);
    p[n + 1] = this.version & 0xff;
    p[n + 2] = (this.version >> 8) & 0xff;
    crc64WriteLE(p, 0, n + 3, p, n + 3);
  }

  /**
   * A RESTORE payload for a value of type `type` in `buf[vs, ve)`. A slab one (`payloadSlab.lastOffset`
   * says where, for views of it) is written by settleChecksums(), before the push returns.
   */
  protected makePayload(type: number, vs: number, ve: number): Buffer {
    const p = this.payloadSlab.alloc(ve - vs + DUMP_OVERHEAD);
    const at = this.payloadSlab.lastOffset;
    if (at < 0) {
      this.buildPayload(p, type, vs, ve);
      return p;
    }
    const k = this.pendingCount++;
    this.pending[k] = p;
    this.pendingMemory[k] = this.payloadSlab.memory;
    this.pendingOffset[k] = at;
    this.pendingType[k] = type;
    this.pendingStart[k] = vs;
    this.pendingEnd[k] = ve;
    return p;
  }

  // ---------------------------------------------------------------------------------------------
  // Primitive reads. Each either returns with `pos` advanced, or throws NEED / RDB_FORMAT.

  protected readLen(): number {
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
  protected readLenBig(): bigint {
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
  protected readLenApprox(): number {
    if (this.pos < this.end && this.buf[this.pos] === 0x81) return Number(this.readLenBig());
    return this.readLen();
  }

  /**
   * Reads an RDB string header at `pos`. Returns the payload length for a plain string (pos is
   * then on the payload), or -1 for an integer (value in `hdrInt`), or -2 for LZF (`hdrClen`,
   * `hdrUlen`, pos on the compressed bytes).
   */
  protected readStringHeader(): number {
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
  protected readString(): Buffer {
    const at = this.pos;
    const len = this.readStringHeader();
    const p = this.pos;
    if (len >= 0) {
      const e = p + len;
      if (e > this.end) this.needMore(e);
      const out = this.bufCopy(p, e);
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
  protected skipBytes(n: number): void {
    if (this.pos + n > this.end) this.needMore(this.pos + n);
    this.pos += n;
  }

  /** Skips an RDB string without decoding it. */
  protected skipString(): void {
    const len = this.readStringHeader();
    this.skipBytes(len >= 0 ? len : len === -1 ? 0 : this.hdrClen);
  }

  /** Reads an RDB string used as a blob (listpack, ziplist…): sets bsrc/bstart/bend/boff. */
  protected readBlob(): void {
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

  protected blobCopy(): Buffer {
    if (this.bsrc !== this.buf) return this.bsrc.subarray(this.bstart, this.bend) as Buffer;
    return this.bufCopy(this.bstart, this.bend);
  }

  /** A double in string form (types 3 and older): 1-byte length; 253 NaN, 254 +inf, 255 −inf. */
  protected readStrDouble(): number {
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

  protected readF64(): number {
    const p = this.pos;
    if (p + 8 > this.end) this.needMore(p + 8);
    this.pos = p + 8;
    return this.buf.readDoubleLE(p);
  }

  /** Signed little-endian int64 (millisecond times) as a number. */
  protected readMs(): number {
    const p = this.pos;
    if (p + 8 > this.end) this.needMore(p + 8);
    this.pos = p + 8;
    return i64leNumber(this.buf, p);
  }

  protected readU8(): number {
    const p = this.pos;
    if (p >= this.end) this.needMore(p + 1);
    this.pos = p + 1;
    return this.buf[p];
  }

  /**
   * Skips the operand of module opcode `op` (1, 2 unsigned, 3 float, 4 double, 5 string).
   * Returns false for an unknown opcode (the caller names it in its error).
   */
  protected skipModuleOperand(op: number): boolean {
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
  protected skipModuleOps(): void {
    for (;;) {
      const at = this.pos;
      const op = this.readLen();
      if (op === 0) return;
      if (!this.skipModuleOperand(op)) throw rdbError(this.base + at, `unknown module value opcode ${op}`);
    }
  }


  /** A stream ID stored as two lengths (ms, seq). */
  protected readIdLens(): StreamId {
    return { ms: this.readLenBig(), seq: this.readLenBig() };
  }

  /** A raw 16-byte stream ID, after checking that `need` bytes (ID and what follows) are there. */
  protected readRawId(need: number): StreamId {
    const p = this.pos;
    if (p + need > this.end) this.needMore(p + need);
    this.pos = p + 16;
    return readStreamId(this.buf, p);
  }
}
