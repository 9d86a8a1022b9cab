/**
 * The Avro long: a zigzag varint, Avro's binary encoding of `int` and `long` and of every count
 * and length (array blocks, `bytes`, union branch indexes). The one place services/events sizes and
 * writes one: the hand-written writer (fast-writer.ts), the batch framing (event-scratch.ts,
 * codec.ts) and the splitters' sizes (slicing.ts). fast-reader.ts reads them with its own cursor.
 */

/** Bytes of a zigzag varint (a safe integer): an Avro long's encoded size. */
export function longLen(n: number): number {
  if (n >= -64 && n < 64) return 1;
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let len = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    len++;
  }
  return len;
}

/**
 * Writes `n` (a safe integer) as an Avro long at `p` of `buf`; returns the position after it.
 * Under 2^30 in magnitude its zigzag fits 31 bits and is shifted as an int32; above, it is divided
 * as a double (exact up to 2^53).
 */
export function writeLong(buf: Buffer, p: number, n: number): number {
  if (n >= -1073741824 && n < 1073741824) {
    let m = n >= 0 ? n << 1 : (~n << 1) | 1;
    while (m > 0x7f) {
      buf[p++] = (m & 0x7f) | 0x80;
      m >>>= 7;
    }
    buf[p++] = m;
    return p;
  }
  let f = n >= 0 ? n * 2 : -n * 2 - 1;
  while (f >= 128) {
    buf[p++] = (f % 128) | 0x80;
    f = Math.floor(f / 128);
  }
  buf[p++] = f;
  return p;
}
