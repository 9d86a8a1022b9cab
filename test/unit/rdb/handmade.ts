/**
 * Hand-built RDB files for what redis-server 7.0.15 cannot write, each with the items the parser
 * must produce. Provenance: built with ./builders.ts from the layouts in Redis's rdb.c (tags 2.2
 * to 7.4: rdbLoadObject, rdbLoadCheckModuleValue, rdbFunctionLoad), listpack.c, ziplist.c,
 * intset.c, zipmap.c and t_stream.c, and Valkey's rdb.h / rdb.c (8.x and 9.0: the VALKEY080
 * header, RDB_TYPE_HASH_2).
 *
 * The formats no server here can write, and where their layout comes from:
 * - Valkey 9's HASH_2 (type 22 in a VALKEY file; added by valkey-io/valkey#2089): rdbSaveObject
 *   writes the field count, then per field its name, its value and rdbSaveMillisecondTime(expiry)
 *   (int64 LE), EXPIRY_NONE (−1) for a field without a TTL; rdbLoadObject reads it back the same
 *   way. No server writes an expiry below −1; the parser refuses one as corrupt.
 * - Redis 7.4 development builds' HASH_METADATA_PRE_GA (22) and HASH_LISTPACK_EX_PRE_GA (23) in a
 *   REDIS file (such builds report redis-ver 255.255.255): redis/redis#13391 renamed them when it
 *   put a minExpire in front (types 24 and 25), and 7.4's rdbLoadObject still reads them; 22's
 *   per-field TTL is the absolute time (0 = none).
 * - Empty collections: what rdbLoadObject answers with RDB_LOAD_ERR_EMPTY_KEY (a count of 0, a
 *   container without elements, a quicklist whose nodes are all empty), which rdbLoadRio skips.
 */
import {
  aux,
  b,
  f64le,
  i32le,
  i64le,
  intset,
  intStr,
  len,
  listpack,
  lzfStr,
  moduleId,
  OP,
  rdbFile,
  selectDb,
  str,
  strDouble,
  streamId,
  ziplist,
  zipmap,
  type Bytes,
} from './builders.js';

export interface ExpectedEntry {
  db: number;
  key: Bytes;
  type: string;
  encoding: string;
  expireAtMs: number | null;
  idle?: number | null;
  freq?: number | null;
  /** typedValueToJson form. */
  value: unknown;
  /** Type byte and serialized value: the payload must be exactly these plus the trailer. */
  typeByte: number;
  valueBytes: Buffer;
  offset: number;
}

export interface Handmade {
  name: string;
  /** Why 7.0 cannot produce it / what it covers. */
  covers: string;
  version: number;
  rdb: Buffer;
  entries: ExpectedEntry[];
  /** Non-entry items other than header/select/resize/end, in order. */
  others: unknown[];
  /**
   * Independent check: 'server' = redis-server 7.0.15 loads the file (deep sanitization on) and
   * reports the same keys; 'check-rdb' = redis-check-rdb 7.0.15 accepts it (module values, which
   * a server without the module refuses); null = a format newer than 7.0 (RDB 11+, Valkey,
   * NaN scores 7.0 rejects).
   */
  verifiedBy: 'server' | 'check-rdb' | null;
  /** Keys (in db order) holding an empty collection: skipped by the parser, counted, none an entry. */
  emptyKeys?: string[];
}

/** Collects body parts and the expected entries (with their file offsets) as a file is built. */
class FileBuilder {
  readonly parts: Buffer[] = [];
  readonly entries: ExpectedEntry[] = [];
  private offset: number;
  db = 0;

  constructor(header: string) {
    this.offset = header.length;
  }

  raw(...p: Bytes[]): this {
    const buf = b(...p);
    this.parts.push(buf);
    this.offset += buf.length;
    return this;
  }

  select(db: number): this {
    this.db = db;
    return this.raw(selectDb(db));
  }

  readonly emptyKeys: string[] = [];

  /** A key holding an empty collection: in the file, but the parser must skip it. */
  empty(key: string, typeByte: number, valueBytes: Buffer): this {
    this.emptyKeys.push(key);
    return this.raw([typeByte], str(key), valueBytes);
  }

  entry(
    e: Omit<ExpectedEntry, 'db' | 'offset' | 'typeByte' | 'valueBytes' | 'key'> & {
      key: Bytes;
      keyBytes?: Buffer;
      typeByte: number;
      valueBytes: Buffer;
      prefix?: Buffer;
    },
  ): this {
    const { prefix, keyBytes, ...rest } = e;
    const at = this.offset;
    this.raw(prefix ?? Buffer.alloc(0), [e.typeByte], keyBytes ?? str(e.key), e.valueBytes);
    this.entries.push({ ...rest, db: this.db, offset: at });
    return this;
  }
}

function header(version: number | string): string {
  return typeof version === 'string' ? version : `REDIS${String(version).padStart(4, '0')}`;
}

function build(
  name: string,
  covers: string,
  version: number | string,
  verifiedBy: Handmade['verifiedBy'],
  fill: (f: FileBuilder) => void,
  others: unknown[] = [],
  crc: 'ok' | 'zero' = 'ok',
): Handmade {
  const h = header(version);
  const f = new FileBuilder(h);
  fill(f);
  const rdb = rdbFile(version, f.parts, { crc });
  const v = typeof version === 'number' ? version : Number(h.slice(6));
  return { name, covers, version: v, rdb, entries: f.entries, others, verifiedBy, emptyKeys: f.emptyKeys };
}

const LONG_KEY = 'k'.repeat(300);
const BIG_STR = 'S'.repeat(16_400);
const T0 = 1_700_000_000_000;
/** 2100-01-01: expiry times must be in the future for a server to load the keys. */
const FUTURE = 4_102_444_800_000;

/** Stream node listpacks shared by the v1 and v3 streams. */
function streamNodes(): Buffer {
  const node1 = listpack([
    3, 1, 2, 'f1', 'f2', 0, // master entry: 3 live, 1 deleted, fields f1 f2
    2, 0, 0, 'a1', 'a2', 5, // same fields: 1000-0
    0, 1, 0, 1, 'x', 'y', 6, // own fields: 1001-0
    3, 2, 0, 'd1', 'd2', 5, // deleted + same fields: 1002-0 (skipped)
    2, 5, 3, 'e1', 12345, 5, // 1005-3, an integer value
  ]);
  const node2 = listpack([1, 0, 1, 'k', 0, 2, 0, 0, 'v', 4]);
  return b(len(2), str(streamId(1000, 0)), str(node1), str(streamId(2000, 5)), lzfStr(node2));
}

const STREAM_ENTRIES = [
  { id: '1000-0', fields: ['f1', 'a1', 'f2', 'a2'] },
  { id: '1001-0', fields: ['x', 'y'] },
  { id: '1005-3', fields: ['f1', 'e1', 'f2', '12345'] },
  { id: '2000-5', fields: ['k', 'v'] },
];

export const HANDMADE: Handmade[] = [
  build('v1-classic', 'RDB 1 (2.0): no checksum, EXPIRETIME in seconds, linked list, plain set/zset/hash, string doubles incl. 254/255, zipmap', 1, 'server', (f) => {
    f.select(0);
    f.entry({
      key: 'old:str', type: 'string', encoding: 'string', expireAtMs: 2_000_000_000_000, value: 'v',
      prefix: b([OP.EXPIRETIME], i32le(2_000_000_000)), typeByte: 0, valueBytes: str('v'),
    });
    f.entry({
      key: 'old:list', type: 'list', encoding: 'list', expireAtMs: null, value: ['a', '5', '-300', 'b'.repeat(50)],
      typeByte: 1, valueBytes: b(len(4), str('a'), intStr(5), intStr(-300), lzfStr('b'.repeat(50))),
    });
    f.entry({
      key: 'old:set', type: 'set', encoding: 'set', expireAtMs: null, value: ['x', '70000'],
      typeByte: 2, valueBytes: b(len(2), str('x'), intStr(70000)),
    });
    f.entry({
      key: 'old:zset', type: 'zset', encoding: 'zset', expireAtMs: null,
      value: [
        { member: 'a', score: 1.5 }, { member: 'c', score: 'inf' },
        { member: 'd', score: '-inf' }, { member: 'e', score: 0.002 }, { member: 'f', score: -17 },
      ],
      typeByte: 3,
      valueBytes: b(len(5), str('a'), strDouble('1.5'), str('c'), strDouble(Infinity),
        str('d'), strDouble(-Infinity), str('e'), strDouble('2e-3'), str('f'), strDouble('-17')),
    });
    f.entry({
      key: 'old:hash', type: 'hash', encoding: 'hash', expireAtMs: null,
      value: [{ field: 'f', value: 'v' }, { field: '1', value: '' }],
      typeByte: 4, valueBytes: b(len(2), str('f'), str('v'), intStr(1), str('')),
    });
    f.entry({
      key: 'old:zipmap', type: 'hash', encoding: 'hash-zipmap', expireAtMs: null,
      value: [{ field: 'f1', value: 'v1' }, { field: 'f2', value: 'value2' }, { field: LONG_KEY, value: 'v' }],
      typeByte: 9, valueBytes: str(zipmap([['f1', 'v1'], ['f2', 'value2', 3], [LONG_KEY, 'v']])),
    });
  }),

  build('v6-ziplists', 'RDB 6 (2.6–3.0): ziplist list/zset/hash (types 10, 12, 13) with every ziplist encoding, intsets of each width, EXPIRETIME_MS', 6, 'server', (f) => {
    f.select(0);
    f.entry({
      key: 'zl:list', type: 'list', encoding: 'list-ziplist', expireAtMs: FUTURE,
      prefix: b([OP.EXPIRETIME_MS], i64le(FUTURE)),
      value: ['0', '12', '13', '-128', '127', '-32768', '32767', '-8388608', '8388607', '-2147483648', '2147483647',
        '-9223372036854775808', '9223372036854775807', 's', 'm'.repeat(100), 'L'.repeat(300), 'after-long', BIG_STR, 'end'],
      typeByte: 10,
      valueBytes: str(ziplist([0, 12, 13, -128, 127, -32768, 32767, -8388608, 8388607, -2147483648, 2147483647,
        -9223372036854775808n, 9223372036854775807n, 's', 'm'.repeat(100), 'L'.repeat(300), 'after-long', BIG_STR, 'end'])),
    });
    f.entry({
      key: 'zl:zset', type: 'zset', encoding: 'zset-ziplist', expireAtMs: null,
      value: [{ member: 'a', score: 1.5 }, { member: 'b', score: 2 }, { member: 'c', score: '-inf' }, { member: '7', score: 1e21 }],
      typeByte: 12, valueBytes: lzfStr(ziplist(['a', '1.5', 'b', 2, 'c', '-inf', 7, '1e+21'])),
    });
    f.entry({
      key: 'zl:hash', type: 'hash', encoding: 'hash-ziplist', expireAtMs: null,
      value: [{ field: 'f', value: 'v' }, { field: 'n', value: '-7' }],
      typeByte: 13, valueBytes: str(ziplist(['f', 'v', 'n', -7])),
    });
    f.entry({
      key: 'is:16', type: 'set', encoding: 'set-intset', expireAtMs: null, value: ['-5', '3', '32767'],
      typeByte: 11, valueBytes: str(intset(2, [3, -5, 32767])),
    });
    f.entry({
      key: 'is:32', type: 'set', encoding: 'set-intset', expireAtMs: null, value: ['-100000', '1'],
      typeByte: 11, valueBytes: str(intset(4, [1, -100000])),
    });
    f.entry({
      key: 'is:64', type: 'set', encoding: 'set-intset', expireAtMs: null, value: ['-9223372036854775808', '1', '9007199254740993'],
      typeByte: 11, valueBytes: str(intset(8, [1n, -9223372036854775808n, 9007199254740993n])),
    });
  }),

  build('v7-quicklist', 'RDB 7 (3.2): AUX, RESIZEDB, quicklist v1 (type 14) of ziplists, one LZF-compressed; an LZF key; 14-bit, 32-bit and 64-bit length forms', 7, 'server', (f) => {
    f.raw(aux('redis-ver', '3.2.13'), b([OP.AUX], str('redis-bits'), intStr(64)));
    f.select(2).raw([OP.RESIZEDB], len(3), len(0));
    f.entry({
      key: 'ql', type: 'list', encoding: 'list-quicklist', expireAtMs: null,
      value: ['a', 'b', '300', 'c'.repeat(40), 'c'.repeat(40), 'd'],
      typeByte: 14, valueBytes: b(len(2), str(ziplist(['a', 'b', 300])), lzfStr(ziplist(['c'.repeat(40), 'c'.repeat(40), 'd']))),
    });
    f.entry({
      key: 'Q'.repeat(60), keyBytes: lzfStr('Q'.repeat(60)), type: 'string', encoding: 'string', expireAtMs: null, value: 'lzf key',
      typeByte: 0, valueBytes: str('lzf key'),
    });
    f.entry({
      key: 'lens', type: 'list', encoding: 'list', expireAtMs: null, value: ['x', 'y'],
      typeByte: 1, valueBytes: b(len(2, 64), b(len(1, 32), 'x'), b(len(1, 14), 'y')),
    });
  }, [
    { kind: 'aux', key: 'redis-ver', value: '3.2.13' },
    { kind: 'aux', key: 'redis-bits', value: '64' },
  ]),

  build('v9-stream', 'RDB 9 (5.0–6.2): stream v1 (type 15) with groups/PEL/consumers, IDLE and FREQ opcodes', 9, 'server', (f) => {
    f.select(0);
    f.entry({
      key: 'stream1', type: 'stream', encoding: 'stream-listpacks', expireAtMs: null,
      value: {
        length: 4, lastId: '2000-5', entries: STREAM_ENTRIES,
        groups: [{
          name: 'grp', lastId: '1005-3',
          pending: [
            { id: '1000-0', deliveryTimeMs: T0 + 123, deliveryCount: 2, consumer: 'alice' },
            { id: '1001-0', deliveryTimeMs: T0 + 456, deliveryCount: 1, consumer: 'bob' },
          ],
          consumers: [
            { name: 'alice', seenTimeMs: T0 + 999, pending: ['1000-0'] },
            { name: 'bob', seenTimeMs: T0 + 555, pending: ['1001-0'] },
          ],
        }],
      },
      typeByte: 15,
      valueBytes: b(
        streamNodes(), len(4), len(2000), len(5),
        len(1), str('grp'), len(1005), len(3),
        len(2), streamId(1000, 0), i64le(T0 + 123), len(2), streamId(1001, 0), i64le(T0 + 456), len(1),
        len(2), str('alice'), i64le(T0 + 999), len(1), streamId(1000, 0), str('bob'), i64le(T0 + 555), len(1), streamId(1001, 0),
      ),
    });
    f.entry({
      key: 'touched', type: 'string', encoding: 'string', expireAtMs: FUTURE, idle: 77, freq: 9,
      prefix: b([OP.EXPIRETIME_MS], i64le(FUTURE), [OP.IDLE], len(77), [OP.FREQ, 9]),
      value: 'lru and lfu', typeByte: 0, valueBytes: str('lru and lfu'),
    });
  }),

  build('v9-module', 'RDB 9: module value (type 7) with every module opcode, MODULE_AUX before the keys', 9, 'check-rdb', (f) => {
    const mid = moduleId('mymodtype', 3);
    const moduleAux = b(len(mid), len(2), len(2), len(5), str('aux data'), len(0));
    f.raw([OP.MODULE_AUX], moduleAux);
    f.select(0);
    f.entry({
      key: 'mod', type: 'module', encoding: 'module-2', expireAtMs: null, idle: 77, freq: 9,
      prefix: b([OP.IDLE], len(77), [OP.FREQ, 9]),
      value: { moduleId: 'mymodtype' },
      typeByte: 7,
      valueBytes: b(len(mid), len(1), len(5), len(2), len(2n ** 63n), len(3), [0, 0, 0x80, 0x3f], len(4), f64le(2.5),
        len(5), str('hello'), len(5), lzfStr('z'.repeat(100)), len(5), intStr(42), len(0)),
    });
  }, [{ kind: 'module-aux', moduleId: 'mymodtype', raw: b(len(moduleId('mymodtype', 3)), len(2), len(2), len(5), str('aux data'), len(0)) }]),

  build('nan-score', 'type 3 with the NaN string double (253), which Redis itself refuses to load', 4, null, (f) => {
    f.select(0);
    f.entry({
      key: 'z', type: 'zset', encoding: 'zset', expireAtMs: null, value: [{ member: 'n', score: 'nan' }, { member: 'i', score: 'inf' }],
      typeByte: 3, valueBytes: b(len(2), str('n'), strDouble(NaN), str('i'), strDouble(Infinity)),
    });
  }),

  build('v10-function-pre-ga', '7.0 release candidates: FUNCTION_PRE_GA (name, engine, description, code) and FUNCTION2', 10, 'server', (f) => {
    f.raw([OP.FUNCTION_PRE_GA], str('oldlib'), str('LUA'), len(1), str('a description'), str("redis.register_function('f1', function() return 1 end)"));
    f.raw([OP.FUNCTION_PRE_GA], str('nodesc'), str('LUA'), len(0), str("redis.register_function('f3', function() return 3 end)"));
    f.raw([OP.FUNCTION2], str("#!lua name=newlib\nredis.register_function('f2', function() return 2 end)"));
    f.select(0);
    f.entry({ key: 'k', type: 'string', encoding: 'string-int', expireAtMs: null, value: '-1', typeByte: 0, valueBytes: intStr(-1) });
  }, [
    { kind: 'function', code: "#!LUA name=oldlib\nredis.register_function('f1', function() return 1 end)" },
    { kind: 'function', code: "#!LUA name=nodesc\nredis.register_function('f3', function() return 3 end)" },
    { kind: 'function', code: "#!lua name=newlib\nredis.register_function('f2', function() return 2 end)" },
  ]),

  build('v11-stream3-listpacks', 'RDB 11 (7.2): stream v3 (type 21) with entries_read (one unknown: 2^64−1) and consumer active times; set/zset/hash listpacks (20, 17, 16) incl. NaN/inf scores and every listpack int width; quicklist 2 with PLAIN and LZF PACKED nodes', 11, null, (f) => {
    f.select(0);
    f.entry({
      key: 'stream3', type: 'stream', encoding: 'stream-listpacks-3', expireAtMs: null,
      value: {
        length: 4, lastId: '2000-5', firstId: '1000-0', maxDeletedId: '1002-0', entriesAdded: 5, entries: STREAM_ENTRIES,
        groups: [
          { name: 'g1', lastId: '1005-3', pending: [{ id: '1005-3', deliveryTimeMs: T0, deliveryCount: 3, consumer: 'c' }],
            consumers: [{ name: 'c', seenTimeMs: T0 + 1, activeTimeMs: T0 + 2, pending: ['1005-3'] }] },
          { name: 'g2', lastId: '1001-0', entriesRead: 2, pending: [], consumers: [] },
        ],
      },
      typeByte: 21,
      valueBytes: b(
        streamNodes(), len(4), len(2000), len(5), len(1000), len(0), len(1002), len(0), len(5),
        len(2),
        str('g1'), len(1005), len(3), len((1n << 64n) - 1n, 64), len(1), streamId(1005, 3), i64le(T0), len(3),
        len(1), str('c'), i64le(T0 + 1), i64le(T0 + 2), len(1), streamId(1005, 3),
        str('g2'), len(1001), len(0), len(2), len(0), len(0),
      ),
    });
    f.entry({
      key: 'set:lp', type: 'set', encoding: 'set-listpack', expireAtMs: null, value: ['a', '5', '-100000', 'zz'],
      typeByte: 20, valueBytes: str(listpack(['a', 5, -100000, 'zz'])),
    });
    f.entry({
      key: 'zset:lp', type: 'zset', encoding: 'zset-listpack', expireAtMs: null,
      value: [{ member: 'm1', score: 1 }, { member: 'm2', score: 2.5 }, { member: 'm3', score: 'inf' }, { member: 'm4', score: '-inf' }, { member: 'm5', score: 'nan' }],
      typeByte: 17, valueBytes: str(listpack(['m1', 1, 'm2', '2.5', 'm3', 'inf', 'm4', '-inf', 'm5', 'nan'])),
    });
    f.entry({
      key: 'hash:lp', type: 'hash', encoding: 'hash-listpack', expireAtMs: null, value: [{ field: 'f', value: 'v' }, { field: 'big', value: 'B'.repeat(5000) }],
      typeByte: 16, valueBytes: str(listpack(['f', 'v', 'big', 'B'.repeat(5000)])),
    });
    const ints: Array<number | bigint> = [0, 127, 128, -1, 4095, -4096, 4096, -32768, 32767, 32768, -8388608, 8388607, 8388608, -2147483648, 2147483647, 2147483648, 9007199254740993n, -9223372036854775808n];
    f.entry({
      key: 'ql2', type: 'list', encoding: 'list-quicklist-2', expireAtMs: null,
      value: [...ints.map(String), 'P'.repeat(500), 'x'.repeat(64), 'y'.repeat(4096), 'tail'],
      typeByte: 18,
      valueBytes: b(len(3), len(2), str(listpack(ints)), len(1), str('P'.repeat(500)), len(2), lzfStr(listpack(['x'.repeat(64), 'y'.repeat(4096), 'tail']))),
    });
  }),

  build('v12-hash-ttl-slots', 'RDB 12 (7.4): SLOT_INFO, hash with field TTLs as hashtable (24) and listpack (25)', 12, null, (f) => {
    f.raw(aux('redis-ver', '7.4.0'));
    f.select(0).raw([OP.RESIZEDB], len(2), len(0)).raw([OP.SLOT_INFO], len(1234), len(2), len(0));
    f.entry({
      key: 'hmeta', type: 'hash', encoding: 'hash-metadata', expireAtMs: null,
      value: [{ field: 'a', value: '1' }, { field: 'b', value: '2', expireAtMs: T0 }, { field: 'c', value: '3', expireAtMs: T0 + 4999 }],
      typeByte: 24, valueBytes: b(i64le(T0), len(3), len(0), str('a'), str('1'), len(1), str('b'), str('2'), len(5000), str('c'), intStr(3)),
    });
    f.raw([OP.SLOT_INFO], len(16383), len(1), len(1));
    f.entry({
      key: 'hlpex', type: 'hash', encoding: 'hash-listpack-ex', expireAtMs: T0 + 10_000_000,
      prefix: b([OP.EXPIRETIME_MS], i64le(T0 + 10_000_000)),
      value: [{ field: 'f1', value: 'v1' }, { field: 'f2', value: 'v2', expireAtMs: 1_800_000_000_000 }, { field: 'f3', value: '42' }],
      typeByte: 25, valueBytes: b(i64le(1_800_000_000_000), str(listpack(['f1', 'v1', 0, 'f2', 'v2', 1_800_000_000_000, 'f3', 42, 0]))),
    });
  }, [{ kind: 'aux', key: 'redis-ver', value: '7.4.0' }]),

  build('valkey', 'Valkey 9: VALKEY080 header, valkey-ver and unknown AUX fields', 'VALKEY080', null, (f) => {
    f.raw(aux('valkey-ver', '9.0.0'), aux('slot-info', b([1, 2, 3])), aux('some-future-field', 'x'));
    f.select(0);
    f.entry({ key: 'vk', type: 'string', encoding: 'string', expireAtMs: null, value: 'valkey', typeByte: 0, valueBytes: str('valkey') });
  }, [
    { kind: 'aux', key: 'valkey-ver', value: '9.0.0' },
    { kind: 'aux', key: 'slot-info', value: { base64: 'AQID' } },
    { kind: 'aux', key: 'some-future-field', value: 'x' },
  ]),

  build('zero-checksum', 'checksum 0 = disabled (rdbchecksum no)', 10, 'server', (f) => {
    f.select(3);
    f.entry({ key: 'z', type: 'string', encoding: 'string', expireAtMs: null, value: 'no crc', typeByte: 0, valueBytes: str('no crc') });
  }, [], 'zero'),

  build('valkey9-hash2', 'Valkey 9: hash with field TTLs (HASH_2: type 22 in a VALKEY080 file), -1 = no TTL, 0 = a time long past; integer-encoded and LZF fields, a key TTL; an empty one skipped', 'VALKEY080', null, (f) => {
    f.raw(aux('valkey-ver', '9.0.0'));
    f.select(0);
    f.entry({
      key: 'h2', type: 'hash', encoding: 'hash-2', expireAtMs: FUTURE,
      prefix: b([OP.EXPIRETIME_MS], i64le(FUTURE)),
      value: [
        { field: 'plain', value: 'no ttl' },
        { field: 'soon', value: 'x', expireAtMs: T0 + 5000 },
        { field: 'past', value: 'gone', expireAtMs: 0 },
        { field: '7', value: 'L'.repeat(40), expireAtMs: FUTURE },
      ],
      typeByte: 22,
      valueBytes: b(len(4), str('plain'), str('no ttl'), i64le(-1), str('soon'), str('x'), i64le(T0 + 5000),
        str('past'), str('gone'), i64le(0), intStr(7), lzfStr('L'.repeat(40)), i64le(FUTURE)),
    });
    f.empty('h2:empty', 22, len(0));
    f.entry({ key: 'after', type: 'string', encoding: 'string', expireAtMs: null, value: 'v', typeByte: 0, valueBytes: str('v') });
  }, [{ kind: 'aux', key: 'valkey-ver', value: '9.0.0' }]),

  build('v12-hash-ttl-pre-ga', 'Redis 7.4 development builds (redis-ver 255.255.255): hash with field TTLs as hashtable (22: no minExpire, absolute TTLs, 0 = none) and listpack (23: no minExpire); an empty one of each skipped', 12, null, (f) => {
    f.raw(aux('redis-ver', '255.255.255'));
    f.select(0);
    f.entry({
      key: 'hmeta-rc', type: 'hash', encoding: 'hash-metadata-pre-ga', expireAtMs: null,
      value: [{ field: 'a', value: '1' }, { field: 'b', value: '2', expireAtMs: T0 }, { field: 'c', value: '3', expireAtMs: FUTURE }],
      typeByte: 22, valueBytes: b(len(3), len(0), str('a'), str('1'), len(T0), str('b'), str('2'), len(FUTURE), str('c'), intStr(3)),
    });
    f.empty('hmeta-rc:empty', 22, len(0));
    f.entry({
      key: 'hlpex-rc', type: 'hash', encoding: 'hash-listpack-ex-pre-ga', expireAtMs: null,
      value: [{ field: 'f1', value: 'v1' }, { field: 'f2', value: 'v2', expireAtMs: 1_800_000_000_000 }, { field: 'f3', value: '42' }],
      typeByte: 23, valueBytes: str(listpack(['f1', 'v1', 0, 'f2', 'v2', 1_800_000_000_000, 'f3', 42, 0])),
    });
    f.empty('hlpex-rc:empty', 23, str(listpack([])));
  }, [{ kind: 'aux', key: 'redis-ver', value: '255.255.255' }]),

  build('empty-collections', 'empty lists, sets, sorted sets and hashes in every RDB 10 encoding (counts of 0, containers without elements, quicklists of empty nodes), as old versions could save them: skipped as Redis skips them on load; a quicklist with empty nodes among others keeps the others', 10, 'server', (f) => {
    f.select(0);
    f.entry({ key: 'before', type: 'string', encoding: 'string', expireAtMs: null, value: 'b', typeByte: 0, valueBytes: str('b') });
    f.empty('e:list', 1, len(0));
    f.empty('e:set', 2, len(0));
    f.empty('e:zset', 3, len(0));
    f.empty('e:hash', 4, len(0));
    f.empty('e:zset2', 5, len(0));
    f.empty('e:list-ziplist', 10, str(ziplist([])));
    f.empty('e:zset-ziplist', 12, str(ziplist([])));
    f.empty('e:hash-ziplist', 13, str(ziplist([])));
    f.empty('e:quicklist', 14, len(0));
    f.empty('e:quicklist-nodes', 14, b(len(2), str(ziplist([])), str(ziplist([]))));
    f.empty('e:hash-listpack', 16, str(listpack([])));
    f.empty('e:zset-listpack', 17, str(listpack([])));
    f.empty('e:quicklist2', 18, len(0));
    f.entry({
      key: 'ql:some-empty', type: 'list', encoding: 'list-quicklist', expireAtMs: null, value: ['z'],
      typeByte: 14, valueBytes: b(len(2), str(ziplist([])), str(ziplist(['z']))),
    });
    f.entry({
      key: 'ql2:some-empty', type: 'list', encoding: 'list-quicklist-2', expireAtMs: null, value: ['x', 'y'],
      typeByte: 18, valueBytes: b(len(3), len(2), str(listpack([])), len(2), str(listpack(['x'])), len(2), str(listpack(['y']))),
    });
    f.select(1);
    f.empty('e:quicklist2-nodes', 18, b(len(1), len(2), str(listpack([]))));
    f.entry({ key: 'after', type: 'string', encoding: 'string', expireAtMs: null, value: 'a', typeByte: 0, valueBytes: str('a') });
  }),

  build('empty-collections-12', 'empty collections in encodings newer than RDB 10 (set listpack 20, hash metadata 24, hash listpack-ex 25), and an intset and a zipmap without elements (no server writes those two, the integrity check of Redis 7.0 refuses them: skipped too rather than stopping)', 12, null, (f) => {
    f.select(0);
    f.empty('e:set-listpack', 20, str(listpack([])));
    f.empty('e:hash-metadata', 24, b(i64le(T0), len(0)));
    f.empty('e:hash-listpack-ex', 25, b(i64le(T0), str(listpack([]))));
    f.empty('e:intset', 11, str(intset(2, [])));
    f.empty('e:zipmap', 9, str(zipmap([])));
    f.entry({ key: 'kept', type: 'string', encoding: 'string', expireAtMs: null, value: 'k', typeByte: 0, valueBytes: str('k') });
  }),
];
