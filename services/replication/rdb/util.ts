import { ReplistreamError } from '../../common/errors.js';
import { Slab } from './slab.js';

/** An RDB_FORMAT error whose message names the file offset (and whatever `msg` adds). */
export function rdbError(offset: number, msg: string, details: Record<string, unknown> = {}): ReplistreamError {
  return new ReplistreamError('RDB_FORMAT', `RDB format error at offset ${offset}: ${msg}`, {
    details: { offset, ...details },
  });
}

/** Memory for the small Buffers the decoders hand out (elements, integers as text): see slab.ts. */
const slab = new Slab();

/** Decimal ASCII form of an integer element (Redis returns integer-encoded elements as strings). */
export function intToBuf(v: number | bigint): Buffer {
  const s = String(v);
  const n = s.length;
  const out = slab.alloc(n);
  for (let i = 0; i < n; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Below this many bytes a byte loop beats building a view (Buffer#subarray) for TypedArray#set. */
const SMALL_COPY = 64;

/** Copies `src[start, end)` to `dst[at]`. */
export function copyInto(src: Uint8Array, start: number, end: number, dst: Uint8Array, at: number): void {
  const n = end - start;
  if (n < SMALL_COPY) {
    for (let i = 0; i < n; i++) dst[at + i] = src[start + i];
  } else {
    dst.set(src.subarray(start, end), at);
  }
}

/** Copies `src[start, end)` into a fresh Buffer. */
export function copyOut(src: Uint8Array, start: number, end: number): Buffer {
  const out = slab.alloc(end - start);
  copyInto(src, start, end, out, 0);
  return out;
}

/** Reads a signed little-endian int64 at `p` as a JS number (exact below 2^53). */
export function i64leNumber(b: Uint8Array, p: number): number {
  const lo = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  const hi = b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24);
  return hi * 4294967296 + lo;
}

/** Reads a signed little-endian int64 at `p`: a number when it is a safe integer, else a bigint. */
export function i64leExact(b: Uint8Array, p: number): number | bigint {
  const lo = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  const hi = b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24);
  if (hi >= -0x200000 && hi < 0x200000) return hi * 4294967296 + lo;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Reads an unsigned big-endian uint64 at `p` as a bigint. */
export function u64beBig(b: Uint8Array, p: number): bigint {
  const hi = ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
  const lo = ((b[p + 4] << 24) | (b[p + 5] << 16) | (b[p + 6] << 8) | b[p + 7]) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Parses a Redis score string ("1.5", "inf", "-inf", "nan", ...) the way strtod would. */
export function parseScore(s: string): number {
  const v = Number(s);
  if (!Number.isNaN(v) || s === 'NaN') return v;
  const l = s.trim().toLowerCase();
  if (l === 'inf' || l === '+inf' || l === 'infinity' || l === '+infinity') return Infinity;
  if (l === '-inf' || l === '-infinity') return -Infinity;
  if (l === 'nan' || l === '-nan' || l === '+nan') return NaN;
  const f = parseFloat(l);
  return f;
}

/** Module type names: 9 characters of 6 bits from this set, then a 10-bit encoding version. */
const MODULE_CHARSET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The 9-character module type name held in the top 54 bits of a 64-bit module id. */
export function moduleName(id: bigint): string {
  let v = id >> 10n;
  const chars: string[] = new Array(9);
  for (let j = 8; j >= 0; j--) {
    chars[j] = MODULE_CHARSET[Number(v & 63n)];
    v >>= 6n;
  }
  return chars.join('');
}
