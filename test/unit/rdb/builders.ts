/**
 * Small builders for hand-made RDB files, following Redis's rdb.c / listpack.c / ziplist.c /
 * intset.c / zipmap.c and Valkey's rdb.c. Used for what redis-server 7.0.15 cannot write
 * (zipmaps, ziplists, quicklist v1, stream v1/v3, hash field TTLs, SLOT_INFO, Valkey headers and
 * HASH_2, modules, empty collections…).
 */
import { createRequire } from 'node:module';
import { crc64 } from '../../../services/replication/rdb/crc64.js';

// lzfjs ships no type declarations; only its compressor is used (to build LZF test strings).
const lzf = createRequire(import.meta.url)('lzfjs') as { compress(data: Uint8Array): Uint8Array; decompress(data: Uint8Array): Uint8Array };

export type Bytes = Buffer | string | number[];

export function b(...parts: Bytes[]): Buffer {
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
}

/** RDB length encoding (6-bit, 14-bit BE, 0x80 + u32 BE, 0x81 + u64 BE). */
export function len(n: number | bigint, force?: 6 | 14 | 32 | 64): Buffer {
  const v = BigInt(n);
  const w = force ?? (v < 64n ? 6 : v < 16384n ? 14 : v <= 0xffffffffn ? 32 : 64);
  if (w === 6) return Buffer.from([Number(v)]);
  if (w === 14) return Buffer.from([0x40 | Number(v >> 8n), Number(v & 0xffn)]);
  if (w === 32) {
    const out = Buffer.alloc(5);
    out[0] = 0x80;
    out.writeUInt32BE(Number(v), 1);
    return out;
  }
  const out = Buffer.alloc(9);
  out[0] = 0x81;
  out.writeBigUInt64BE(v, 1);
  return out;
}

/** A plain RDB string. */
export function str(s: Bytes): Buffer {
  const data = b(s);
  return b(len(data.length), data);
}

/** An integer-encoded RDB string (0xC0 int8, 0xC1 int16 LE, 0xC2 int32 LE). */
export function intStr(v: number): Buffer {
  if (v >= -128 && v <= 127) return Buffer.from([0xc0, v & 0xff]);
  if (v >= -32768 && v <= 32767) {
    const o = Buffer.alloc(3);
    o[0] = 0xc1;
    o.writeInt16LE(v, 1);
    return o;
  }
  const o = Buffer.alloc(5);
  o[0] = 0xc2;
  o.writeInt32LE(v, 1);
  return o;
}

/** An LZF-compressed RDB string (0xC3, clen, ulen, data), compressed with lzfjs. */
export function lzfStr(s: Bytes): Buffer {
  const data = b(s);
  const c = Buffer.from(lzf.compress(data));
  return b([0xc3], len(c.length), len(data.length), c);
}

export function i64le(v: number | bigint): Buffer {
  const o = Buffer.alloc(8);
  o.writeBigInt64LE(BigInt(v));
  return o;
}

export function i32le(v: number): Buffer {
  const o = Buffer.alloc(4);
  o.writeInt32LE(v);
  return o;
}

export function f64le(v: number): Buffer {
  const o = Buffer.alloc(8);
  o.writeDoubleLE(v);
  return o;
}

/** A double in RDB string form (types ≤ 4): length byte + ASCII; 253 NaN, 254 +inf, 255 −inf. */
export function strDouble(v: number | string): Buffer {
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return Buffer.from([253]);
    if (v === Infinity) return Buffer.from([254]);
    if (v === -Infinity) return Buffer.from([255]);
  }
  const s = String(v);
  return b([s.length], s);
}

/** 16-byte stream ID (u64 BE ms, u64 BE seq). */
export function streamId(ms: number | bigint, seq: number | bigint): Buffer {
  const o = Buffer.alloc(16);
  o.writeBigUInt64BE(BigInt(ms), 0);
  o.writeBigUInt64BE(BigInt(seq), 8);
  return o;
}

// ------------------------------------------------------------------------------------------------
// Containers

export type El = string | Buffer | number | bigint;

function lpBacklen(l: number): Buffer {
  if (l <= 127) return Buffer.from([l]);
  if (l < 16383) return Buffer.from([l >> 7, (l & 127) | 128]);
  if (l < 2097151) return Buffer.from([l >> 14, ((l >> 7) & 127) | 128, (l & 127) | 128]);
  if (l < 268435455) return Buffer.from([l >> 21, ((l >> 14) & 127) | 128, ((l >> 7) & 127) | 128, (l & 127) | 128]);
  return Buffer.from([l >> 28, ((l >> 21) & 127) | 128, ((l >> 14) & 127) | 128, ((l >> 7) & 127) | 128, (l & 127) | 128]);
}

function lpEntry(e: El): Buffer {
  let enc: Buffer;
  if (typeof e === 'number' || typeof e === 'bigint') {
    const v = BigInt(e);
    if (v >= 0n && v <= 127n) enc = Buffer.from([Number(v)]);
    else if (v >= -4096n && v <= 4095n) {
      const u = Number(v < 0n ? v + 8192n : v);
      enc = Buffer.from([0xc0 | (u >> 8), u & 0xff]);
    } else if (v >= -32768n && v <= 32767n) {
      enc = Buffer.alloc(3);
      enc[0] = 0xf1;
      enc.writeInt16LE(Number(v), 1);
    } else if (v >= -8388608n && v <= 8388607n) {
      enc = Buffer.alloc(4);
      enc[0] = 0xf2;
      enc.writeIntLE(Number(v), 1, 3);
    } else if (v >= -2147483648n && v <= 2147483647n) {
      enc = Buffer.alloc(5);
      enc[0] = 0xf3;
      enc.writeInt32LE(Number(v), 1);
    } else {
      enc = Buffer.alloc(9);
      enc[0] = 0xf4;
      enc.writeBigInt64LE(v, 1);
    }
  } else {
    const s = b(e);
    if (s.length < 64) enc = b([0x80 | s.length], s);
    else if (s.length < 4096) enc = b([0xe0 | (s.length >> 8), s.length & 0xff], s);
    else {
      const h = Buffer.alloc(5);
      h[0] = 0xf0;
      h.writeUInt32LE(s.length, 1);
      enc = b(h, s);
    }
  }
  return b(enc, lpBacklen(enc.length));
}

export function listpack(els: El[]): Buffer {
  const body = b(...els.map(lpEntry));
  const out = Buffer.alloc(6);
  out.writeUInt32LE(6 + body.length + 1, 0);
  out.writeUInt16LE(Math.min(els.length, 65535), 4);
  return b(out, body, [0xff]);
}

function zlEncode(e: El): Buffer {
  if (typeof e === 'number' || typeof e === 'bigint') {
    const v = BigInt(e);
    if (v >= 0n && v <= 12n) return Buffer.from([0xf1 + Number(v)]);
    if (v >= -128n && v <= 127n) return Buffer.from([0xfe, Number(v) & 0xff]);
    if (v >= -32768n && v <= 32767n) {
      const o = Buffer.alloc(3);
      o[0] = 0xc0;
      o.writeInt16LE(Number(v), 1);
      return o;
    }
    if (v >= -8388608n && v <= 8388607n) {
      const o = Buffer.alloc(4);
      o[0] = 0xf0;
      o.writeIntLE(Number(v), 1, 3);
      return o;
    }
    if (v >= -2147483648n && v <= 2147483647n) {
      const o = Buffer.alloc(5);
      o[0] = 0xd0;
      o.writeInt32LE(Number(v), 1);
      return o;
    }
    const o = Buffer.alloc(9);
    o[0] = 0xe0;
    o.writeBigInt64LE(v, 1);
    return o;
  }
  const s = b(e);
  if (s.length < 64) return b([s.length], s);
  if (s.length < 16384) return b([0x40 | (s.length >> 8), s.length & 0xff], s);
  const h = Buffer.alloc(5);
  h[0] = 0x80;
  h.writeUInt32BE(s.length, 1);
  return b(h, s);
}

export function ziplist(els: El[]): Buffer {
  const entries: Buffer[] = [];
  let prev = 0;
  let tail = 10;
  let off = 10;
  for (const e of els) {
    const enc = zlEncode(e);
    let pl: Buffer;
    if (prev < 254) pl = Buffer.from([prev]);
    else {
      pl = Buffer.alloc(5);
      pl[0] = 0xfe;
      pl.writeUInt32LE(prev, 1);
    }
    const entry = b(pl, enc);
    entries.push(entry);
    tail = off;
    off += entry.length;
    prev = entry.length;
  }
  const body = b(...entries);
  const h = Buffer.alloc(10);
  h.writeUInt32LE(10 + body.length + 1, 0);
  h.writeUInt32LE(tail, 4);
  h.writeUInt16LE(Math.min(els.length, 65535), 8);
  return b(h, body, [0xff]);
}

export function intset(width: 2 | 4 | 8, vals: Array<number | bigint>): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(width, 0);
  h.writeUInt32LE(vals.length, 4);
  const body = Buffer.alloc(width * vals.length);
  [...vals].sort((x, y) => (BigInt(x) < BigInt(y) ? -1 : 1)).forEach((v, i) => {
    if (width === 2) body.writeInt16LE(Number(v), i * 2);
    else if (width === 4) body.writeInt32LE(Number(v), i * 4);
    else body.writeBigInt64LE(BigInt(v), i * 8);
  });
  return b(h, body);
}

export function zipmap(pairs: Array<[Bytes, Bytes, number?]>): Buffer {
  const zmLen = (n: number): Buffer => {
    if (n < 254) return Buffer.from([n]);
    const o = Buffer.alloc(5);
    o[0] = 254;
    o.writeUInt32LE(n, 1);
    return o;
  };
  const parts: Buffer[] = [Buffer.from([Math.min(pairs.length, 254)])];
  for (const [k, v, free = 0] of pairs) {
    const kb = b(k);
    const vb = b(v);
    parts.push(zmLen(kb.length), kb, zmLen(vb.length), Buffer.from([free]), vb, Buffer.alloc(free, 0xaa));
  }
  parts.push(Buffer.from([0xff]));
  return b(...parts);
}

// ------------------------------------------------------------------------------------------------
// Files

export const OP = { SLOT_INFO: 244, FUNCTION2: 245, FUNCTION_PRE_GA: 246, MODULE_AUX: 247, IDLE: 248, FREQ: 249, AUX: 250, RESIZEDB: 251, EXPIRETIME_MS: 252, EXPIRETIME: 253, SELECTDB: 254, EOF: 255 };

export function aux(k: string, v: Bytes): Buffer {
  return b([OP.AUX], str(k), str(v));
}

export function selectDb(db: number): Buffer {
  return b([OP.SELECTDB], len(db));
}

/** `header + body + EOF [+ CRC64 LE]` (checksum from version 5; `crc: 'zero'` writes 0). */
export function rdbFile(version: number | string, body: Bytes[], opts: { crc?: 'ok' | 'zero' } = {}): Buffer {
  const header = typeof version === 'string' ? version : `REDIS${String(version).padStart(4, '0')}`;
  const content = b(header, ...body, [OP.EOF]);
  const numeric = typeof version === 'number' ? version : 99;
  if (numeric < 5) return content;
  const c = Buffer.alloc(8);
  if (opts.crc !== 'zero') c.writeBigUInt64LE(crc64(content));
  return b(content, c);
}

/** Module type id: 9 chars of 6 bits (charset A-Z a-z 0-9 - _) then a 10-bit encoding version. */
export function moduleId(name: string, encver: number): bigint {
  const cs = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let id = 0n;
  for (const ch of name) id = (id << 6n) | BigInt(cs.indexOf(ch));
  return (id << 10n) | BigInt(encver);
}
