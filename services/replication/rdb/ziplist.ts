/**
 * Ziplist decoding (lists, hashes and zsets written by Redis 2.6–6.2; quicklist v1 nodes).
 *
 * Layout: u32 LE zlbytes, u32 LE zltail, u16 LE zllen (65535 = unknown), entries, 0xFF.
 * Entry: prevlen (1 byte, or 0xFE + u32 LE), encoding, data.
 *   00pppppp            string, 6-bit length
 *   01pppppp qqqqqqqq   string, 14-bit length, big-endian
 *   10000000 + u32 BE   string, 32-bit length, big-endian
 *   C0 / D0 / E0        int16 / int32 / int64, little-endian
 *   F0                  int24, little-endian
 *   FE                  int8
 *   F1..FD              immediate 0..12 (low nibble − 1)
 */
import type { LpValue } from './listpack.js';
import { copyOut, i64leExact, rdbError } from './util.js';

/** Decodes the ziplist in `src[start, end)` and appends its elements to `out`. */
export function decodeZiplist(src: Uint8Array, start: number, end: number, offset: number, out: LpValue[]): void {
  const size = end - start;
  if (size < 11) throw rdbError(offset, `corrupt ziplist: ${size} bytes is too short`);
  const total = (src[start] | (src[start + 1] << 8) | (src[start + 2] << 16) | (src[start + 3] << 24)) >>> 0;
  if (total !== size) throw rdbError(offset, `corrupt ziplist: header says ${total} bytes, blob has ${size}`);
  const declared = src[start + 8] | (src[start + 9] << 8);
  const last = end - 1;
  if (src[last] !== 0xff) throw rdbError(offset, 'corrupt ziplist: missing end marker');
  let p = start + 10;
  let count = 0;
  const bad = (what: string): never => {
    throw rdbError(offset, `corrupt ziplist: ${what} at blob byte ${p - start}`);
  };
  while (p < last) {
    // prevlen
    if (src[p] === 0xfe) p += 5;
    else p += 1;
    if (p >= last) bad('entry overflows');
    const b = src[p];
    const kind = b >> 6;
    if (kind === 0) {
      const n = b & 0x3f;
      if (p + 1 + n > last) bad('string overflows');
      out.push(copyOut(src, p + 1, p + 1 + n));
      p += 1 + n;
    } else if (kind === 1) {
      if (p + 2 > last) bad('string header overflows');
      const n = ((b & 0x3f) << 8) | src[p + 1];
      if (p + 2 + n > last) bad('string overflows');
      out.push(copyOut(src, p + 2, p + 2 + n));
      p += 2 + n;
    } else if (kind === 2) {
      if (b !== 0x80) bad(`bad encoding byte 0x${b.toString(16)}`);
      if (p + 5 > last) bad('string header overflows');
      const n = ((src[p + 1] << 24) | (src[p + 2] << 16) | (src[p + 3] << 8) | src[p + 4]) >>> 0;
      if (p + 5 + n > last) bad('string overflows');
      out.push(copyOut(src, p + 5, p + 5 + n));
      p += 5 + n;
    } else {
      let w: number;
      switch (b) {
        case 0xc0:
          w = 2;
          if (p + 1 + w > last) bad('integer overflows');
          out.push(((src[p + 1] | (src[p + 2] << 8)) << 16) >> 16);
          break;
        case 0xd0:
          w = 4;
          if (p + 1 + w > last) bad('integer overflows');
          out.push(src[p + 1] | (src[p + 2] << 8) | (src[p + 3] << 16) | (src[p + 4] << 24));
          break;
        case 0xe0:
          w = 8;
          if (p + 1 + w > last) bad('integer overflows');
          out.push(i64leExact(src, p + 1));
          break;
        case 0xf0:
          w = 3;
          if (p + 1 + w > last) bad('integer overflows');
          out.push(((src[p + 1] | (src[p + 2] << 8) | (src[p + 3] << 16)) << 8) >> 8);
          break;
        case 0xfe:
          w = 1;
          if (p + 1 + w > last) bad('integer overflows');
          out.push((src[p + 1] << 24) >> 24);
          break;
        default:
          if (b >= 0xf1 && b <= 0xfd) {
            w = 0;
            out.push((b & 0x0f) - 1);
          } else {
            bad(`bad encoding byte 0x${b.toString(16)}`);
            w = 0;
          }
      }
      p += 1 + w;
    }
    count++;
  }
  if (p !== last) bad('entry overflows');
  if (declared !== 65535 && declared !== count) {
    throw rdbError(offset, `corrupt ziplist: header says ${declared} elements, found ${count}`);
  }
}
