/**
 * Intset decoding (sets of integers): u32 LE encoding (2, 4 or 8 bytes per element), u32 LE
 * count, then the elements, sorted, signed little-endian.
 */
import type { LpValue } from './listpack.js';
import { i64leExact, rdbError } from './util.js';

/** Decodes the intset in `src[start, end)` and appends its elements to `out`. */
export function decodeIntset(src: Uint8Array, start: number, end: number, offset: number, out: LpValue[]): void {
  const size = end - start;
  if (size < 8) throw rdbError(offset, `corrupt intset: ${size} bytes is too short`);
  const enc = (src[start] | (src[start + 1] << 8) | (src[start + 2] << 16) | (src[start + 3] << 24)) >>> 0;
  const count = (src[start + 4] | (src[start + 5] << 8) | (src[start + 6] << 16) | (src[start + 7] << 24)) >>> 0;
  if (enc !== 2 && enc !== 4 && enc !== 8) throw rdbError(offset, `corrupt intset: bad encoding ${enc}`);
  if (8 + count * enc !== size) {
    throw rdbError(offset, `corrupt intset: ${count} elements of ${enc} bytes do not fill ${size} bytes`);
  }
  let p = start + 8;
  for (let i = 0; i < count; i++, p += enc) {
    if (enc === 2) out.push(((src[p] | (src[p + 1] << 8)) << 16) >> 16);
    else if (enc === 4) out.push(src[p] | (src[p + 1] << 8) | (src[p + 2] << 16) | (src[p + 3] << 24));
    else out.push(i64leExact(src, p));
  }
}
