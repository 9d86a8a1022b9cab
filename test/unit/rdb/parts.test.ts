/** CRC-64, LZF, DUMP payloads, toJsonSafe, inspectRdb and the async parse APIs. */
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDumpPayload, parseDumpPayload, payloadRdbVersion, requirePayloadRdbVersion } from '../../../services/replication/dump-payload.js';
import { BATCH_BYTES, batchPayload, buildBatch, clearBatch, Crc64, crc64, loadWindow, WINDOW_BYTES } from '../../../services/replication/rdb/crc64.js';
import { fromJsonSafe, inspectRdb, toJsonSafe } from '../../../services/replication/rdb/inspect.js';
import { lzfDecompress, LzfStreamDecoder } from '../../../services/replication/rdb/lzf.js';
import { Slab } from '../../../services/replication/rdb/slab.js';
import { parseRdbFile, parseRdbStream, type RdbItem } from '../../../services/replication/rdb/index.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { normalizeValue } from './live.js';
import { b, rdbFile, selectDb, str } from './builders.js';
import { canon, entries, FIXTURE_DIR, loadFixture, parseChunks, parseWhole, prng, splitEvery } from './util.js';

const lzf = createRequire(import.meta.url)('lzfjs') as { compress(d: Uint8Array): Uint8Array };

describe('crc64 (Jones)', () => {
  it('check value and table[1]', () => {
    expect(crc64(Buffer.from('123456789'))).toBe(0xe9c6d914c4b8d9can);
    // crc of the single byte 0x01 from a zero register is table[1].
    expect(crc64(Buffer.from([1]))).toBe(0x7ad870c830358979n);
    expect(crc64(Buffer.alloc(0))).toBe(0n);
  });

  it('incremental over any split equals one shot', () => {
    const rnd = prng(3);
    const data = Buffer.from(Array.from({ length: 1000 }, () => Math.floor(rnd() * 256)));
    const ref = crc64(data);
    for (let i = 0; i < 200; i++) {
      const c = new Crc64();
      let off = 0;
      while (off < data.length) {
        const n = 1 + Math.floor(rnd() * 40);
        c.update(data, off, Math.min(data.length, off + n));
        off += n;
      }
      expect(c.value).toBe(ref);
    }
    const out = Buffer.alloc(8);
    new Crc64().update(data).writeLE(out, 0);
    expect(out.readBigUInt64LE(0)).toBe(ref);
    expect(new Crc64(ref).value).toBe(ref);
  });

  /** Bit-at-a-time CRC-64/Jones straight from the definition, for comparison. */
  function bitwise(data: Uint8Array, start = 0, end = data.length, init = 0n): bigint {
    let c = init;
    for (let i = start; i < end; i++) {
      c ^= BigInt(data[i]);
      for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ 0x95ac9329ac4bc9b5n : c >> 1n;
    }
    return c;
  }

  it('matches the bit-at-a-time definition at every length and alignment (JS and wasm paths)', () => {
    const rnd = prng(5);
    const data = Buffer.from(Array.from({ length: 400 }, () => Math.floor(rnd() * 256)));
    for (let start = 0; start < 9; start++) {
      for (let n = 0; n + start <= data.length; n += n < 80 ? 1 : 37) {
        expect(crc64(data, start, start + n)).toBe(bitwise(data, start, start + n));
      }
    }
    // Larger than the wasm scratch area (copied in several windows), continued from a register.
    const big = Buffer.from(Array.from({ length: 300_001 }, () => Math.floor(rnd() * 256)));
    const c = new Crc64(0x0123456789abcdefn).update(big, 3);
    expect(c.value).toBe(bitwise(big, 3, big.length, 0x0123456789abcdefn));
  });

  it('windows: the file CRC and a batch of payloads built from one loaded window', () => {
    const rnd = prng(9);
    const data = Buffer.from(Array.from({ length: WINDOW_BYTES + 100 }, () => Math.floor(rnd() * 256)));
    const values: Array<[number, number, number]> = [
      [4, 60, 61],
      [0, 61, 400],
      [16, 1000, 1321],
      [18, 1400, 1400 + 40_000],
      [255, WINDOW_BYTES + 40, WINDOW_BYTES + 50],
    ];
    loadWindow(data, 50, WINDOW_BYTES + 50);
    const file = new Crc64(7n).updateLoaded(55, WINDOW_BYTES + 50);
    expect(file.value).toBe(bitwise(data, 55, WINDOW_BYTES + 50, 7n));
    batchPayload(7, 100, 200, 0);
    clearBatch();
    let out = 3;
    const at: number[] = [];
    for (const [type, s, e] of values) {
      batchPayload(type, s, e, out);
      at.push(out);
      out += e - s + 11 + 5;
    }
    const built = Buffer.from(buildBatch(11, out));
    values.forEach(([type, s, e], i) => {
      const expected = buildDumpPayload(type, data, 11, s, e);
      expect(built.subarray(at[i], at[i] + expected.length).equals(expected)).toBe(true);
    });
    // The same batch while continuing a file CRC over the bytes around the values (load again:
    // buildDumpPayload used the module's memory).
    loadWindow(data, 50, WINDOW_BYTES + 50);
    for (let i = 0; i < values.length; i++) batchPayload(values[i][0], values[i][1], values[i][2], at[i]);
    const withFile = new Crc64(7n);
    const built2 = Buffer.from(buildBatch(11, out, withFile, 55, WINDOW_BYTES + 50));
    values.forEach(([type, s, e], i) => {
      const expected = buildDumpPayload(type, data, 11, s, e);
      expect(built2.subarray(at[i], at[i] + expected.length).equals(expected)).toBe(true);
    });
    expect(withFile.value).toBe(file.value);
    expect(() => batchPayload(0, 10, 20, 0)).toThrow(/outside the window/);
    expect(() => batchPayload(0, 100, 200, BATCH_BYTES - 50)).toThrow(/outside the window or the output/);
  });
});

describe('lzf', () => {
  const rnd = prng(11);
  const samples: Buffer[] = [
    Buffer.from('a'.repeat(1000)),
    Buffer.from('abcabcabcabc-xyz-'.repeat(300)),
    Buffer.from(Array.from({ length: 5000 }, () => (rnd() < 0.6 ? 65 : Math.floor(rnd() * 256)))),
    Buffer.from(Array.from({ length: 300 }, () => Math.floor(rnd() * 256))),
  ];

  it('decompresses what liblzf (lzfjs) compresses', () => {
    for (const s of samples) {
      const c = Buffer.from(lzf.compress(s));
      expect(lzfDecompress(c, 0, c.length, s.length, 0).equals(s)).toBe(true);
    }
  });

  it('streaming decoder: same bytes, exact slices, any input chunking', () => {
    for (const s of samples) {
      const c = Buffer.from(lzf.compress(s));
      for (const slice of [1, 7, 100, 4096]) {
        for (const feed of [1, 3, 50, c.length]) {
          const d = new LzfStreamDecoder(c.length, s.length, slice, 0);
          const out: Buffer[] = [];
          let lastSeen = false;
          const pending = Buffer.alloc(0);
          let buf = pending;
          for (const chunk of splitEvery(c, feed)) {
            buf = Buffer.concat([buf, chunk]);
            const used = d.feed(buf, 0, buf.length, (x, last) => {
              out.push(x);
              lastSeen = last;
            });
            buf = buf.subarray(used);
          }
          expect(d.done).toBe(true);
          expect(lastSeen).toBe(true);
          expect(Buffer.concat(out).equals(s)).toBe(true);
          expect(out.slice(0, -1).every((x) => x.length === slice)).toBe(true);
        }
      }
    }
  });

  it('rejects corrupt data with RDB_FORMAT', () => {
    const bad = [
      { c: [0x20, 0x00], u: 3 }, // reference before the start
      { c: [0x05, 0x41], u: 6 }, // literal run past the input
      { c: [0x00, 0x41], u: 2 }, // output shorter than declared
      { c: [0x01, 0x41, 0x42], u: 1 }, // output longer than declared
      { c: [0xe0], u: 9 }, // truncated reference
    ];
    for (const { c, u } of bad) {
      const src = Buffer.from(c);
      expect(() => lzfDecompress(src, 0, src.length, u, 42)).toThrow(/offset 42: corrupt LZF/);
      const d = new LzfStreamDecoder(src.length, u, 4, 42);
      expect(() => d.feed(src, 0, src.length, () => undefined)).toThrow(ReplistreamError);
    }
  });
});

describe('dump payloads', () => {
  it('rebuilding a real DUMP from its parts gives the same bytes', () => {
    const { expected } = loadFixture('streams');
    for (const k of expected.keys) {
      const dump = Buffer.from(k.dump, 'base64');
      const parts = parseDumpPayload(dump);
      expect(parts.rdbVersion).toBe(10);
      expect(buildDumpPayload(parts.type, parts.value, parts.rdbVersion).equals(dump)).toBe(true);
    }
  });

  it('rejects a bad checksum, accepts a zero one', () => {
    const p = buildDumpPayload(0, Buffer.from([3, 0x61, 0x62, 0x63]), 10);
    const bad = Buffer.from(p);
    bad[2] ^= 1;
    expect(() => parseDumpPayload(bad)).toThrow(/checksum mismatch at offset/);
    const zero = Buffer.from(bad);
    zero.fill(0, zero.length - 8);
    expect(parseDumpPayload(zero).value.toString('latin1')).toBe('\x03`bc');
    expect(() => parseDumpPayload(Buffer.alloc(5))).toThrow(ReplistreamError);
  });

  it('reads the RDB version from the trailer, little-endian, without checking the CRC', () => {
    // [type][value "\x03abc"][version][CRC], the CRC left at zero or garbage: only the version is read
    const value = Buffer.from([0, 3, 0x61, 0x62, 0x63]);
    expect(payloadRdbVersion(Buffer.concat([value, Buffer.from([10, 0]), Buffer.alloc(8)]))).toBe(10);
    expect(payloadRdbVersion(Buffer.concat([value, Buffer.from([0x02, 0x01]), Buffer.alloc(8, 0xff)]))).toBe(0x0102);
    expect(payloadRdbVersion(buildDumpPayload(0, Buffer.from([3, 0x61, 0x62, 0x63]), 12))).toBe(12);
    const { expected } = loadFixture('streams');
    for (const k of expected.keys) {
      const dump = Buffer.from(k.dump, 'base64');
      expect(payloadRdbVersion(dump)).toBe(parseDumpPayload(dump).rdbVersion);
    }
  });

  it('a payload too short for its trailer has no version: -1, or RDB_FORMAT when one is required', () => {
    // 11 bytes (type, version, CRC, an empty value) is the shortest payload with a version
    const shortest = Buffer.concat([Buffer.from([0, 9, 0]), Buffer.alloc(8)]);
    expect(payloadRdbVersion(shortest)).toBe(9);
    expect(requirePayloadRdbVersion(shortest)).toBe(9);
    for (const n of [0, 1, 5, 10]) {
      expect(payloadRdbVersion(Buffer.alloc(n, 7))).toBe(-1);
      expect(() => requirePayloadRdbVersion(Buffer.alloc(n, 7))).toThrow(ReplistreamError);
      expect(() => requirePayloadRdbVersion(Buffer.alloc(n, 7))).toThrow(`DUMP payload of ${n} bytes is too short`);
    }
  });
});

describe('toJsonSafe', () => {
  it('text stays text, anything else is base64', () => {
    expect(toJsonSafe(Buffer.from('hello'))).toBe('hello');
    expect(toJsonSafe(Buffer.alloc(0))).toBe('');
    expect(toJsonSafe(Buffer.from('ключ 😀 é'))).toBe('ключ 😀 é');
    expect(toJsonSafe(Buffer.from('a\nb'))).toEqual({ base64: Buffer.from('a\nb').toString('base64') });
    expect(toJsonSafe(Buffer.from('tab\t'))).toEqual({ base64: 'dGFiCQ==' });
    expect(toJsonSafe(Buffer.from([0x7f]))).toEqual({ base64: 'fw==' });
    expect(toJsonSafe(Buffer.from('\u0085', 'utf8'))).toEqual({ base64: 'woU=' }); // C1 control
    expect(toJsonSafe(Buffer.from([0xff, 0xfe]))).toEqual({ base64: '//4=' }); // not UTF-8
    expect(toJsonSafe(Buffer.from([0xed, 0xa0, 0x80]))).toEqual({ base64: '7aCA' }); // surrogate
    expect(toJsonSafe(new Uint8Array([0x61]))).toBe('a');
  });

  it('round-trips', () => {
    const rnd = prng(1);
    for (let i = 0; i < 500; i++) {
      const buf = Buffer.from(Array.from({ length: Math.floor(rnd() * 20) }, () => (rnd() < 0.8 ? 32 + Math.floor(rnd() * 90) : Math.floor(rnd() * 256))));
      expect(fromJsonSafe(JSON.parse(JSON.stringify(toJsonSafe(buf)))).equals(buf)).toBe(true);
    }
  });
});

class Sink extends Writable {
  chunks: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.chunks.push(chunk.toString('utf8'));
    cb();
  }
}

describe('inspectRdb', () => {
  it('prints one JSON object per key, matching what the server reported', async () => {
    for (const name of ['strings', 'streams', 'zsets', 'dbs-functions']) {
      const sink = new Sink();
      const summary = await inspectRdb(join(FIXTURE_DIR, `${name}.rdb`), sink, 'jsonl');
      const lines = sink.chunks.join('').split('\n');
      expect(lines.pop()).toBe('');
      const { expected, rdb } = loadFixture(name);
      expect(summary).toEqual({ lines: expected.keys.length, keys: expected.keys.length, bytes: rdb.length });
      const got = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const g of got) expect(Object.keys(g)).toEqual(['db', 'key', 'type', 'encoding', 'expireAtMs', 'value']);
      const norm = (x: { db: unknown; key: unknown; type: string; encoding?: unknown; rdbEncoding?: unknown; expireAtMs: unknown; value: unknown }) => ({
        db: x.db,
        key: x.key,
        type: x.type,
        encoding: x.encoding ?? x.rdbEncoding,
        expireAtMs: x.expireAtMs,
        value: normalizeValue(x.type, x.value),
      });
      const sortKey = (x: { db: unknown; key: unknown }): string => JSON.stringify([x.db, x.key]);
      expect(got.map((g) => norm(g as never)).sort((a, b) => sortKey(a).localeCompare(sortKey(b)))).toEqual(
        expected.keys.map((k) => norm(k as never)).sort((a, b) => sortKey(a).localeCompare(sortKey(b))),
      );
    }
  });

  it('big keys are printed in pieces', async () => {
    const sink = new Sink();
    const summary = await inspectRdb(join(FIXTURE_DIR, 'big.rdb'), sink, 'jsonl', { maxEntryBytes: 1000 });
    const lines = sink.chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as { key: string; piece?: { index: number; last: boolean } });
    expect(summary.keys).toBe(8);
    expect(lines.length).toBe(summary.lines);
    expect(lines.some((l) => l.piece && l.piece.index > 0)).toBe(true);
  });
});

describe('async APIs', () => {
  it('parseRdbFile and parseRdbStream give the same items as push()', async () => {
    const { rdb } = loadFixture('big');
    const ref = canon(parseWhole(rdb).items);
    const fromFile: RdbItem[] = [];
    for await (const it of parseRdbFile(join(FIXTURE_DIR, 'big.rdb'))) fromFile.push(it);
    expect(canon(fromFile)).toBe(ref);
    async function* chunks(): AsyncGenerator<Buffer> {
      for (const c of splitEvery(rdb, 777)) yield c;
    }
    const fromStream: RdbItem[] = [];
    for await (const it of parseRdbStream(chunks())) fromStream.push(it);
    expect(canon(fromStream)).toBe(ref);
  });

  it('parseRdbStream throws on a truncated stream', async () => {
    const { rdb } = loadFixture('sets');
    async function* chunks(): AsyncGenerator<Buffer> {
      yield rdb.subarray(0, 100);
    }
    await expect(async () => {
      for await (const _ of parseRdbStream(chunks())) void _;
    }).rejects.toThrow(/truncated at offset 100/);
  });
});

describe('checksums of big pushes', () => {
  // The parser checksums the file and every payload from windows of the buffer copied into the
  // CRC module (WINDOW_BYTES each): values that straddle a window edge, and values bigger than a
  // window, take other paths than the rest.
  const rnd = prng(21);
  // Big ones (payloads of their own), then many small ones (built in batches, some across windows).
  const sizes = [10, 100, 3000, 40_000, WINDOW_BYTES - 7, WINDOW_BYTES + 5, 150_000, 1, 70_000];
  const small = [7, 130, 1000, 5000, 8000];
  const values = Array.from({ length: 60 + 1500 }, (_, i) => {
    const n = i < 60 ? sizes[i % sizes.length] + (i % 5) : small[i % small.length] + (i % 7);
    return Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  });
  const rdb = rdbFile(10, [selectDb(0), ...values.map((v, i) => b([0], str(`key:${i}`), str(v)))]);

  for (const chunk of [rdb.length, 1 << 20, 65536, 4093]) {
    it(`pushes of ${chunk} bytes: every payload and the file checksum verify`, () => {
      const list = entries(parseChunks(splitEvery(rdb, chunk), { maxEntryBytes: 1 << 20 }).items);
      expect(list.length).toBe(values.length);
      list.forEach((e, i) => {
        const v = e.value as { type: 'string'; value: Buffer };
        expect(v.value.equals(values[i])).toBe(true);
        const parts = parseDumpPayload(e.payload!);
        expect(parts.type).toBe(0);
        expect(parts.value.equals(str(values[i]))).toBe(true);
      });
    });
  }

  it('a corrupt byte far into a big push fails the file checksum', () => {
    const bad = Buffer.from(rdb);
    bad[rdb.length - 30] ^= 0x10;
    expect(() => parseWhole(bad, { maxEntryBytes: 1 << 20 })).toThrow(/checksum mismatch/);
  });
});

describe('slab Buffers', () => {
  it('are Buffers to every public check, with their own bytes', () => {
    const slab = new Slab();
    const a = slab.alloc(5);
    a.set([104, 101, 108, 108, 111]);
    const at = slab.lastOffset;
    const b = slab.view(at + 1, 3);
    for (const x of [a, b]) {
      expect(Buffer.isBuffer(x)).toBe(true);
      expect(x instanceof Buffer).toBe(true);
      expect(x.constructor).toBe(Buffer);
      expect(inspect(x)).toMatch(/^<Buffer /);
      expect(JSON.stringify(x)).toBe(JSON.stringify(Buffer.from(x)));
      expect(x.subarray(0, 1)).toBeInstanceOf(Buffer);
    }
    expect(a.toString()).toBe('hello');
    expect(b).toEqual(Buffer.from('ell'));
    expect(Buffer.from('ell')).toEqual(b);
    expect(b.equals(Buffer.from('ell'))).toBe(true);
    expect(Buffer.concat([a, b]).toString()).toBe('helloell');
    expect(slab.alloc(0).length).toBe(0);
    // Successive Buffers do not overlap; big ones get memory of their own.
    const c = slab.alloc(3);
    c.fill(0);
    expect(a.toString()).toBe('hello');
    const big = slab.alloc(1 << 20);
    expect(big.length).toBe(1 << 20);
    expect(slab.lastOffset).toBe(-1);
    // Many small ones run through several slabs.
    const many = Array.from({ length: 5000 }, (_, i) => {
      const x = slab.alloc(40);
      x.fill(i & 0xff);
      return x;
    });
    many.forEach((x, i) => expect(x.every((v) => v === (i & 0xff))).toBe(true));
  });
});
