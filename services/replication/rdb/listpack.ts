/**
 * Listpack decoding (Redis 5+ streams, 7.0+ hashes, zsets, lists and sets).
 *
 * Layout: u32 LE total bytes, u16 LE element count (65535 = unknown), entries, 0xFF.
 * Entry: encoding byte(s) + data + backlen (1–5 bytes, the entry size written 7 bits per byte).
 *   0xxxxxxx          7-bit unsigned int
 *   10xxxxxx          string, 6-bit length
 *   110xxxxx y        13-bit signed int
 *   1110xxxx y        string, 12-bit length (big-endian bits)
 *   11110000 + u32 LE string, 32-bit length
 *   F1 / F2 / F3 / F4 int16 / int24 / int32 / int64, little-endian
 */
import { copyOut, i64leExact, rdbError } from './util.js';

/** One listpack element: bytes for strings, a number (or a bigint beyond 2^53) for integers. */
export type LpValue = Buffer | number | bigint;

function backlenSize(l: number): number {
  return l <= 127 ? 1 : l < 16383 ? 2 : l < 2097151 ? 3 : l < 268435455 ? 4 : 5;
}

/**
 * Decodes the listpack in `src[start, end)` and appends its elements to `out`. `offset` is the
 * file offset named in errors (the blob's position in the RDB).
 */
export function decodeListpack(src: Uint8Array, start: number, end: number, offset: number, out: LpValue[]): void {
  const size = end - start;
  if (size < 7) throw rdbError(offset, `corrupt listpack: ${size} bytes is too short`);
  const total = (src[start] | (src[start + 1] << 8) | (src[start + 2] << 16) | (src[start + 3] << 24)) >>> 0;
  if (total !== size) throw rdbError(offset, `corrupt listpack: header says ${total} bytes, blob has ${size}`);
  const declared = src[start + 4] | (src[start + 5] << 8);
  const last = end - 1;
  if (src[last] !== 0xff) throw rdbError(offset, 'corrupt listpack: missing end marker');
  let p = start + 6;
  let count = 0;
  while (p < last) {
    const b = src[p];
    let entryLen: number; // encoding + data
    if (b < 0x80) {
      out.push(b);
      entryLen = 1;
    } else if (b < 0xc0) {
      const n = b & 0x3f;
      entryLen = 1 + n;
      if (p + entryLen > last) break;
      out.push(copyOut(src, p + 1, p + 1 + n));
    } else if (b < 0xe0) {
      entryLen = 2;
      if (p + 2 > last) break;
      let v = ((b & 0x1f) << 8) | src[p + 1];
      if (v >= 4096) v -= 8192;
      out.push(v);
    } else if (b < 0xf0) {
      entryLen = 2;
      if (p + 2 > last) break;
      const n = ((b & 0x0f) << 8) | src[p + 1];
      entryLen = 2 + n;
      if (p + entryLen > last) break;
      out.push(copyOut(src, p + 2, p + 2 + n));
    } else {
      switch (b) {
        case 0xf0: {
          if (p + 5 > last) { entryLen = 5; break; }
          const n = (src[p + 1] | (src[p + 2] << 8) | (src[p + 3] << 16) | (src[p + 4] << 24)) >>> 0;
          entryLen = 5 + n;
          if (p + entryLen > last) break;
          out.push(copyOut(src, p + 5, p + 5 + n));
          break;
        }
        case 0xf1:
          entryLen = 3;
          if (p + 3 > last) break;
          out.push(((src[p + 1] | (src[p + 2] << 8)) << 16) >> 16);
          break;
        case 0xf2:
          entryLen = 4;
          if (p + 4 > last) break;
          out.push(((src[p + 1] | (src[p + 2] << 8) | (src[p + 3] << 16)) << 8) >> 8);
          break;
        case 0xf3:
          entryLen = 5;
          if (p + 5 > last) break;
          out.push(src[p + 1] | (src[p + 2] << 8) | (src[p + 3] << 16) | (src[p + 4] << 24));
          break;
        case 0xf4:
          entryLen = 9;
          if (p + 9 > last) break;
          out.push(i64leExact(src, p + 1));
          break;
        default:
          throw rdbError(offset, `corrupt listpack: bad encoding byte 0x${b.toString(16)} at blob byte ${p - start}`);
      }
    }
    p += entryLen;
    p += backlenSize(entryLen);
    if (p > last) throw rdbError(offset, `corrupt listpack: entry at blob byte ${p - start} overflows`);
    count++;
  }
  if (p !== last) throw rdbError(offset, `corrupt listpack: entry overflows the blob at byte ${p - start}`);
  if (declared !== 65535 && declared !== count) {
    throw rdbError(offset, `corrupt listpack: header says ${declared} elements, found ${count}`);
  }
}
