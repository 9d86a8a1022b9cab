/**
 * CRC-64/Jones as used by Redis for RDB files and DUMP payloads: polynomial 0xad93d23594c935a9,
 * reflected input and output, initial value 0, no final xor. Check value:
 * crc64("123456789") = 0xe9c6d914c4b8d9ca.
 *
 * The 64-bit register is kept as two uint32 halves (no BigInt in the loop) and the input is
 * processed eight bytes at a time with slice-by-8 tables (8 × 256 entries per half).
 */

/** Bit-reversed polynomial, split in halves: reverse(0xad93d23594c935a9) = 0x95ac9329ac4bc9b5. */
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

// (Uint32Array measured faster than Int32Array here, V8 12 / Node 20.)
const T_LO = new Uint32Array(8 * 256);
const T_HI = new Uint32Array(8 * 256);

(function buildTables() {
  for (let i = 0; i < 256; i++) {
    let lo = i;
    let hi = 0;
    for (let k = 0; k < 8; k++) {
      const odd = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (odd) {
        lo = (lo ^ POLY_LO) >>> 0;
        hi = (hi ^ POLY_HI) >>> 0;
      }
    }
    T_LO[i] = lo;
    T_HI[i] = hi;
  }
  for (let t = 1; t < 8; t++) {
    for (let i = 0; i < 256; i++) {
      const plo = T_LO[(t - 1) * 256 + i];
      const phi = T_HI[(t - 1) * 256 + i];
      const idx = plo & 0xff;
      T_LO[t * 256 + i] = (((plo >>> 8) | (phi << 24)) ^ T_LO[idx]) >>> 0;
      T_HI[t * 256 + i] = ((phi >>> 8) ^ T_HI[idx]) >>> 0;
    }
  }
})();

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// The last word view made, reused while inputs come from the same ArrayBuffer (Node's Buffer
// pool, the parser's input buffer).
let viewBuffer: ArrayBufferLike | null = null;
let view: Int32Array<ArrayBufferLike> = new Int32Array(0);
function wordView(ab: ArrayBufferLike): Int32Array<ArrayBufferLike> {
  if (ab !== viewBuffer) {
    view = new Int32Array(ab, 0, ab.byteLength >> 2);
    viewBuffer = ab;
  }
  return view;
}

/** Incremental CRC-64/Jones. `update` as many times as needed, then read `value`. */
export class Crc64 {
  private lo = 0;
  private hi = 0;

  constructor(initial?: bigint) {
    if (initial !== undefined && initial !== 0n) {
      this.lo = Number(initial & 0xffffffffn) >>> 0;
      this.hi = Number((initial >> 32n) & 0xffffffffn) >>> 0;
    }
  }

  reset(): void {
    this.lo = 0;
    this.hi = 0;
  }

  /** Adds `data[start, end)` to the checksum. */
  update(data: Uint8Array, start = 0, end = data.length): this {
    let lo = this.lo;
    let hi = this.hi;
    let p = start;
    if (LITTLE_ENDIAN && end - start >= 64) {
      // Bytes up to a 4-byte boundary, then 8 bytes per step read as two int32 words through
      // an Int32Array view (measured ~1.5x faster than assembling words from bytes).
      while ((data.byteOffset + p) & 3) {
        const idx = (lo ^ data[p++]) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ T_LO[idx];
        hi = (hi >>> 8) ^ T_HI[idx];
      }
      const w = wordView(data.buffer);
      let q = (data.byteOffset + p) >> 2;
      const qEnd = q + ((end - p) >> 3) * 2;
      while (q < qEnd) {
        const xlo = lo ^ w[q];
        const xhi = hi ^ w[q + 1];
        const i7 = 1792 + (xlo & 0xff);
        const i6 = 1536 + ((xlo >>> 8) & 0xff);
        const i5 = 1280 + ((xlo >>> 16) & 0xff);
        const i4 = 1024 + (xlo >>> 24);
        const i3 = 768 + (xhi & 0xff);
        const i2 = 512 + ((xhi >>> 8) & 0xff);
        const i1 = 256 + ((xhi >>> 16) & 0xff);
        const i0 = xhi >>> 24;
        lo = T_LO[i7] ^ T_LO[i6] ^ T_LO[i5] ^ T_LO[i4] ^ T_LO[i3] ^ T_LO[i2] ^ T_LO[i1] ^ T_LO[i0];
        hi = T_HI[i7] ^ T_HI[i6] ^ T_HI[i5] ^ T_HI[i4] ^ T_HI[i3] ^ T_HI[i2] ^ T_HI[i1] ^ T_HI[i0];
        q += 2;
      }
      p = (q << 2) - data.byteOffset;
    }
    // Eight bytes at a time, words assembled from bytes.
    const stop8 = end - 8;
    while (p <= stop8) {
      const xlo = lo ^ (data[p] | (data[p + 1] << 8) | (data[p + 2] << 16) | (data[p + 3] << 24));
      const xhi = hi ^ (data[p + 4] | (data[p + 5] << 8) | (data[p + 6] << 16) | (data[p + 7] << 24));
      const i7 = 1792 + (xlo & 0xff);
      const i6 = 1536 + ((xlo >>> 8) & 0xff);
      const i5 = 1280 + ((xlo >>> 16) & 0xff);
      const i4 = 1024 + (xlo >>> 24);
      const i3 = 768 + (xhi & 0xff);
      const i2 = 512 + ((xhi >>> 8) & 0xff);
      const i1 = 256 + ((xhi >>> 16) & 0xff);
      const i0 = xhi >>> 24;
      lo = T_LO[i7] ^ T_LO[i6] ^ T_LO[i5] ^ T_LO[i4] ^ T_LO[i3] ^ T_LO[i2] ^ T_LO[i1] ^ T_LO[i0];
      hi = T_HI[i7] ^ T_HI[i6] ^ T_HI[i5] ^ T_HI[i4] ^ T_HI[i3] ^ T_HI[i2] ^ T_HI[i1] ^ T_HI[i0];
      p += 8;
    }
    // Tail, one byte at a time.
    while (p < end) {
      const idx = (lo ^ data[p++]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ T_LO[idx];
      hi = (hi >>> 8) ^ T_HI[idx];
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
    return this;
  }

  get value(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** Writes the checksum as 8 little-endian bytes (the order RDB files and DUMP payloads use). */
  writeLE(target: Uint8Array, at: number): void {
    const lo = this.lo;
    const hi = this.hi;
    target[at] = lo & 0xff;
    target[at + 1] = (lo >>> 8) & 0xff;
    target[at + 2] = (lo >>> 16) & 0xff;
    target[at + 3] = lo >>> 24;
    target[at + 4] = hi & 0xff;
    target[at + 5] = (hi >>> 8) & 0xff;
    target[at + 6] = (hi >>> 16) & 0xff;
    target[at + 7] = hi >>> 24;
  }

  /** True when the 8 little-endian bytes at `data[at]` equal the checksum. */
  equalsLE(data: Uint8Array, at: number): boolean {
    const lo = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
    const hi = (data[at + 4] | (data[at + 5] << 8) | (data[at + 6] << 16) | (data[at + 7] << 24)) >>> 0;
    return lo === this.lo && hi === this.hi;
  }
}

/** One-shot CRC-64/Jones of `data[start, end)`. */
export function crc64(data: Uint8Array, start = 0, end = data.length): bigint {
  return new Crc64().update(data, start, end).value;
}

const scratch = new Crc64();

/**
 * CRC-64/Jones of `data[start, end)` written as 8 little-endian bytes at `target[at]`, without
 * allocating (for DUMP payload trailers).
 */
export function crc64WriteLE(data: Uint8Array, start: number, end: number, target: Uint8Array, at: number): void {
  scratch.reset();
  scratch.update(data, start, end);
  scratch.writeLE(target, at);
}
