/**
 * LZF decompression (the liblzf format Redis uses for compressed strings and blobs).
 *
 * Hand-written rather than taken from the `lzfjs` package: lzfjs grows a plain JS array one byte
 * at a time, returns through the deprecated `new Buffer()` constructor (a DEP0005 warning at run
 * time), cannot check the output against the expected length, and cannot decompress a stream in
 * parts, which a huge compressed string (delivered in slices) needs. This one writes into a
 * preallocated Buffer, copies literal runs and non-overlapping back references with native
 * copies, validates every reference, and has a streaming variant with an 8 KiB history window.
 *
 * Format: a control byte `c`. `c < 32`: copy the next c+1 bytes. Otherwise a back reference of
 * length `c >> 5` (7 means: add the next byte) + 2, starting ((c & 0x1f) << 8) + next byte + 1
 * bytes back in the output (overlap allowed, it repeats).
 */
import { rdbError } from './util.js';

/** Largest distance a back reference can reach. */
export const LZF_MAX_OFFSET = 8192;
/** Largest output of one instruction. */
const LZF_MAX_RUN = 7 + 255 + 2;

/**
 * Decompresses `src[start, end)`, which must produce exactly `ulen` bytes. `offset` is the file
 * offset named in errors.
 */
export function lzfDecompress(src: Uint8Array, start: number, end: number, ulen: number, offset: number): Buffer {
  if (ulen > (end - start) * 100 + 64) {
    throw rdbError(offset, `LZF string claims ${ulen} bytes from ${end - start} compressed bytes`);
  }
  const out = Buffer.allocUnsafe(ulen);
  let ip = start;
  let op = 0;
  while (ip < end) {
    let ctrl = src[ip++];
    if (ctrl < 32) {
      ctrl++;
      if (ip + ctrl > end || op + ctrl > ulen) throw rdbError(offset, 'corrupt LZF data (literal run overflows)');
      if (ctrl < 16) {
        for (let i = 0; i < ctrl; i++) out[op + i] = src[ip + i];
      } else {
        out.set(src.subarray(ip, ip + ctrl), op);
      }
      ip += ctrl;
      op += ctrl;
    } else {
      let len = ctrl >> 5;
      if (ip >= end) throw rdbError(offset, 'corrupt LZF data (truncated back reference)');
      if (len === 7) {
        len += src[ip++];
        if (ip >= end) throw rdbError(offset, 'corrupt LZF data (truncated back reference)');
      }
      let ref = op - ((ctrl & 0x1f) << 8) - src[ip++] - 1;
      len += 2;
      if (ref < 0 || op + len > ulen) throw rdbError(offset, 'corrupt LZF data (back reference out of range)');
      if (op - ref >= len && len > 16) {
        out.copyWithin(op, ref, ref + len);
        op += len;
      } else {
        while (len-- > 0) out[op++] = out[ref++];
      }
    }
  }
  if (op !== ulen) throw rdbError(offset, `corrupt LZF data (decompressed ${op} bytes, expected ${ulen})`);
  return out;
}

/**
 * Streaming LZF decompression of one compressed string, for strings too big to hold whole.
 * Feed compressed bytes with `feed`; complete output slices of `sliceSize` bytes (the last one
 * shorter) are handed to `emit`. Only whole instructions are consumed; `feed` returns how many
 * input bytes it used, and the caller presents the rest again with more data.
 */
export class LzfStreamDecoder {
  private readonly out: Buffer;
  private hist = 0; // bytes of history at the front of `out`
  private op = 0; // write position in `out`
  private produced = 0; // total output bytes so far
  private consumed = 0; // total input bytes

  constructor(
    readonly clen: number,
    readonly ulen: number,
    private readonly sliceSize: number,
    private readonly offset: number,
  ) {
    this.out = Buffer.allocUnsafe(LZF_MAX_OFFSET + sliceSize + LZF_MAX_RUN + 64);
  }

  get done(): boolean {
    return this.consumed === this.clen;
  }

  /** Input bytes still expected. */
  get remaining(): number {
    return this.clen - this.consumed;
  }

  /**
   * Decodes whole instructions from `src[start, end)` (never beyond the compressed length).
   * Returns the number of bytes consumed; calls `emit(slice, last)` for each complete slice.
   */
  feed(src: Uint8Array, start: number, end: number, emit: (slice: Buffer, last: boolean) => void): number {
    const remaining = this.clen - this.consumed;
    const allThere = end - start >= remaining;
    const limit = allThere ? start + remaining : end;
    const offset = this.offset;
    const ulen = this.ulen;
    let ip = start;
    while (ip < limit) {
      while (this.op - this.hist >= this.sliceSize) this.emitSlice(emit, false);
      const out = this.out;
      let op = this.op;
      const ctrl = src[ip];
      if (ctrl < 32) {
        const n = ctrl + 1;
        if (ip + 1 + n > limit) {
          if (allThere) throw rdbError(offset, 'corrupt LZF data (literal run overflows)');
          break;
        }
        if (this.produced + n > ulen) throw rdbError(offset, 'corrupt LZF data (output longer than declared)');
        out.set(src.subarray(ip + 1, ip + 1 + n), op);
        ip += 1 + n;
        this.op = op + n;
        this.produced += n;
      } else {
        let len = ctrl >> 5;
        const need = len === 7 ? 3 : 2;
        if (ip + need > limit) {
          if (allThere) throw rdbError(offset, 'corrupt LZF data (truncated back reference)');
          break;
        }
        let q = ip + 1;
        if (len === 7) len += src[q++];
        const dist = ((ctrl & 0x1f) << 8) + src[q++] + 1;
        len += 2;
        let ref = op - dist;
        if (ref < 0 || this.produced + len > ulen) throw rdbError(offset, 'corrupt LZF data (back reference out of range)');
        this.produced += len;
        while (len-- > 0) out[op++] = out[ref++];
        this.op = op;
        ip = q;
      }
    }
    const used = ip - start;
    this.consumed += used;
    if (this.consumed === this.clen) {
      if (this.produced !== ulen) {
        throw rdbError(offset, `corrupt LZF data (decompressed ${this.produced} bytes, expected ${ulen})`);
      }
      while (this.op - this.hist > this.sliceSize) this.emitSlice(emit, false);
      this.emitSlice(emit, true);
    }
    return used;
  }

  private emitSlice(emit: (slice: Buffer, last: boolean) => void, last: boolean): void {
    const out = this.out;
    const n = last ? this.op - this.hist : this.sliceSize;
    const slice = Buffer.allocUnsafe(n);
    out.copy(slice, 0, this.hist, this.hist + n);
    const end = this.hist + n;
    // Keep the last LZF_MAX_OFFSET bytes emitted as history, then whatever follows them.
    const keepFrom = Math.max(0, end - LZF_MAX_OFFSET);
    out.copyWithin(0, keepFrom, this.op);
    this.hist = end - keepFrom;
    this.op -= keepFrom;
    emit(slice, last);
  }
}
