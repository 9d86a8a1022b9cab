/**
 * Zipmap decoding (small hashes written by Redis 2.0–2.4, RDB type 9).
 *
 * Layout: u8 count (>= 254 means unknown), then per pair: key length (u8 below 254, or 254 +
 * u32 LE), key, value length (same form), u8 free, value, `free` unused bytes; finally 0xFF.
 */
import type { LpValue } from './listpack.js';
import { copyOut, rdbError } from './util.js';

/** Decodes the zipmap in `src[start, end)`, appending field, value, field, value... to `out`. */
export function decodeZipmap(src: Uint8Array, start: number, end: number, offset: number, out: LpValue[]): void {
  if (end - start < 2) throw rdbError(offset, 'corrupt zipmap: too short');
  let p = start + 1;
  const readLen = (): number => {
    if (p >= end) throw rdbError(offset, 'corrupt zipmap: truncated length');
    const b = src[p];
    if (b < 254) {
      p += 1;
      return b;
    }
    if (b === 254) {
      if (p + 5 > end) throw rdbError(offset, 'corrupt zipmap: truncated length');
      const n = (src[p + 1] | (src[p + 2] << 8) | (src[p + 3] << 16) | (src[p + 4] << 24)) >>> 0;
      p += 5;
      return n;
    }
    throw rdbError(offset, `corrupt zipmap: bad length byte at blob byte ${p - start}`);
  };
  for (;;) {
    if (p >= end) throw rdbError(offset, 'corrupt zipmap: missing end marker');
    if (src[p] === 0xff) {
      p++;
      break;
    }
    const klen = readLen();
    if (p + klen > end) throw rdbError(offset, 'corrupt zipmap: key overflows');
    const key = copyOut(src, p, p + klen);
    p += klen;
    const vlen = readLen();
    if (p >= end) throw rdbError(offset, 'corrupt zipmap: truncated free byte');
    const free = src[p++];
    if (p + vlen + free > end) throw rdbError(offset, 'corrupt zipmap: value overflows');
    out.push(key, copyOut(src, p, p + vlen));
    p += vlen + free;
  }
  if (p !== end) throw rdbError(offset, 'corrupt zipmap: bytes after the end marker');
}
