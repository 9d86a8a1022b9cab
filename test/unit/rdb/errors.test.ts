/**
 * Corrupt, truncated, bad-checksum and unsupported inputs fail with ReplistreamError RDB_FORMAT,
 * whose message names the offset (and the type/opcode when relevant).
 */
import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { crc64 } from '../../../services/replication/rdb/crc64.js';
import { RdbParser, type RdbParserOptions } from '../../../services/replication/rdb/parser.js';
import { b, i64le, len, listpack, rdbFile, selectDb, str } from './builders.js';
import { loadFixture, parseChunks, parseWhole, splitEvery } from './util.js';

function failure(fn: () => unknown): ReplistreamError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ReplistreamError);
    const err = e as ReplistreamError;
    expect(err.code).toBe('RDB_FORMAT');
    expect(err.details?.internal).toBeUndefined();
    return err;
  }
  throw new Error('expected an error');
}

function parseFails(rdb: Buffer, opts?: RdbParserOptions): ReplistreamError {
  return failure(() => parseWhole(rdb, opts));
}

/** A file with one key of type byte `t` at offset 11 (after the 9-byte header and SELECTDB 0); its value starts at 14. */
function withType(t: number, value: Buffer = str('x')): Buffer {
  return rdbFile(10, [selectDb(0), b([t]), str('k'), value]);
}

describe('errors', () => {
  it('not an RDB file', () => {
    const err = parseFails(Buffer.from('HELLO0010\xff', 'latin1'));
    expect(err.message).toMatch(/offset 0/);
    expect(err.message).toMatch(/not an RDB file/);
  });

  it('unsupported versions', () => {
    expect(parseFails(rdbFile(13, [])).message).toMatch(/offset 0: unsupported RDB version 13/);
    expect(parseFails(rdbFile(0, [])).message).toMatch(/unsupported RDB version 0/);
    expect(parseFails(rdbFile('VALKEY079', [])).message).toMatch(/unsupported Valkey RDB version 79/);
  });

  it('truncated at every length: "truncated at offset N"', () => {
    const { rdb } = loadFixture('streams');
    for (let n = 0; n < rdb.length; n++) {
      const err = failure(() => parseChunks(splitEvery(rdb.subarray(0, n), 97)));
      expect(err.message).toContain(`truncated at offset ${n}`);
      expect(err.details?.offset).toBe(n);
    }
  });

  it('bad checksum names the checksum offset; verifyChecksum: false accepts it', () => {
    const { rdb } = loadFixture('hashes');
    const bad = Buffer.from(rdb);
    bad[bad.length - 3] ^= 0x40;
    const err = parseFails(bad);
    expect(err.message).toMatch(new RegExp(`offset ${rdb.length - 8}: checksum mismatch`));
    expect(err.details?.offset).toBe(rdb.length - 8);
    expect(() => parseWhole(bad, { verifyChecksum: false })).not.toThrow();
  });

  it('a changed byte inside a value is caught by the checksum', () => {
    const { rdb } = loadFixture('strings');
    const at = rdb.indexOf('hello world');
    const bad = Buffer.from(rdb);
    bad[at] = 'H'.charCodeAt(0);
    for (const chunk of [1, 100, bad.length]) {
      const err = failure(() => parseChunks(splitEvery(bad, chunk)));
      expect(err.message).toMatch(/checksum mismatch/);
    }
  });

  it('checksum 0 means disabled', () => {
    const { rdb } = loadFixture('sets');
    const zero = Buffer.from(rdb);
    zero.fill(0, zero.length - 8);
    const items = parseWhole(zero).items;
    expect(items[items.length - 1]).toMatchObject({ kind: 'end', checksum: 0n });
  });

  it('unsupported and unknown type bytes name the type and its offset', () => {
    for (const [t, re] of [
      [6, /offset 11: value type 6 \(module value in the 4\.0 pre-release format\)/],
      [8, /offset 11: unknown value type or opcode 8/],
      [26, /offset 11: unknown value type or opcode 26/],
      [243, /offset 11: unknown value type or opcode 243/],
    ] as const) {
      const err = parseFails(withType(t));
      expect(err.message).toMatch(re);
      expect(err.details).toMatchObject({ offset: 11, type: t });
    }
  });

  it('in a VALKEY file, the type bytes above 22 (Redis 7.4 hash types in a REDIS file) are refused, naming the type', () => {
    for (const t of [23, 24, 25, 26, 243]) {
      const err = parseFails(rdbFile('VALKEY080', [selectDb(0), b([t]), str('k'), str('x')]));
      expect(err.message).toMatch(new RegExp(`offset 11: value type ${t} is not a Valkey value type`));
      expect(err.message).toMatch(/Valkey 9 writes no type above 22/);
      expect(err.details).toMatchObject({ offset: 11, type: t });
    }
    expect(parseFails(rdbFile('VALKEY080', [selectDb(0), b([24]), str('k'), str('x')])).message).toMatch(/Redis 7\.4 hash type in a REDIS file/);
  });

  it('Valkey hash-2: a negative field expiry other than -1 names its offset', () => {
    // type 22 at 11, key at 12-13, count at 14, field 15-16, value 17-18, expiry at 19
    const v = b(len(1), str('f'), str('v'), i64le(-2));
    expect(parseFails(rdbFile('VALKEY080', [selectDb(0), b([22]), str('k'), v])).message).toMatch(/offset 19: hash-2 field expiry -2 is negative/);
  });

  it('corrupt containers name the blob offset', () => {
    const lp = listpack(['a', 'b']);
    lp.writeUInt32LE(lp.length + 1, 0);
    // type byte at 11, key "k" at 12-13, blob header at 14
    expect(parseFails(withType(16, str(lp))).message).toMatch(/offset 14: corrupt listpack: header says/);
    const odd = listpack(['a', 'b', 'c']);
    expect(parseFails(withType(16, str(odd))).message).toMatch(/offset 14: hash hash-listpack has an odd number/);
    expect(parseFails(withType(11, str(Buffer.from([3, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3])))).message).toMatch(/offset 14: corrupt intset: bad encoding 3/);
    expect(parseFails(withType(10, str(Buffer.from([11, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0xfe])))).message).toMatch(/offset 14: corrupt ziplist/);
  });

  it('corrupt LZF data', () => {
    // clen 3, ulen 10: a back reference before the start of the output.
    const bad = b([0xc3], len(3), len(10), [0x20, 0x05, 0x00]);
    expect(parseFails(withType(0, bad)).message).toMatch(/offset 14: corrupt LZF data/);
    // A literal run longer than the input.
    const short = b([0xc3], len(2), len(5), [0x04, 0x41]);
    expect(parseFails(withType(0, short)).message).toMatch(/offset 14: corrupt LZF data/);
    // Claims far more output than the input could produce.
    const huge = b([0xc3], len(2), len(1e9), [0x00, 0x41]);
    expect(parseFails(withType(0, huge)).message).toMatch(/offset 14: LZF string claims/);
  });

  it('bad length and string encodings', () => {
    expect(parseFails(withType(1, b([0x82]))).message).toMatch(/offset 14: bad length byte 0x82/);
    expect(parseFails(withType(0, b([0xc7]))).message).toMatch(/offset 14: unknown string encoding 0xc7/);
    expect(parseFails(withType(1, b([0xc0, 1]))).message).toMatch(/offset 14: expected a length/);
  });

  it('quicklist 2 node with a bad container', () => {
    expect(parseFails(withType(18, b(len(1), len(3), str(listpack(['a']))))).message).toMatch(/offset 15: quicklist node has bad container 3/);
  });

  it('an error is sticky: the next push throws it again', () => {
    const p = new RdbParser();
    const bad = withType(6);
    let first: unknown;
    try {
      p.push(bad);
    } catch (e) {
      first = e;
    }
    expect(first).toBeInstanceOf(ReplistreamError);
    expect(() => p.push(Buffer.from([0]))).toThrow(first as Error);
    expect(() => p.finish()).toThrow(first as Error);
  });

  it('stream node key must be 16 bytes', () => {
    const v = b(len(1), str('short'), str(listpack([1, 0, 1, 'f', 0, 2, 0, 0, 'v', 4])));
    expect(parseFails(withType(15, v)).message).toMatch(/offset 15: stream node key is 5 bytes, expected 16/);
  });

  it('crc64 check values', () => {
    expect(crc64(Buffer.from('123456789'))).toBe(0xe9c6d914c4b8d9can);
  });
});
