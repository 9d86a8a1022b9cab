/**
 * RDB value type bytes and opcodes (Redis's RDB_TYPE_* and RDB_OPCODE_* in rdb.h), and what the
 * parser knows about each type byte: its Redis type and the encoding name entries report.
 *
 * Type numbers from 22 up mean different things to Redis and to Valkey, and only the file's magic
 * tells which: in a `REDIS` file 22 and 23 are the hash-with-field-TTL layouts of Redis 7.4's
 * development builds (Redis 7.4 and later still load them), 24 and 25 the released ones; in a
 * `VALKEY` file 22 is Valkey 9's HASH_2, and Valkey has no type above it (it keeps 22–243 apart
 * as "foreign" numbers and refuses them), so neither do we: a later Valkey may give 23 another
 * layout. Hence two tables, chosen when the header is read.
 */
import type { RedisType } from '../../events/model.js';

/** RDB value type bytes. */
export const RDB_TYPE = {
  STRING: 0,
  LIST: 1,
  SET: 2,
  ZSET: 3,
  HASH: 4,
  ZSET_2: 5,
  MODULE_PRE_GA: 6,
  MODULE_2: 7,
  HASH_ZIPMAP: 9,
  LIST_ZIPLIST: 10,
  SET_INTSET: 11,
  ZSET_ZIPLIST: 12,
  HASH_ZIPLIST: 13,
  LIST_QUICKLIST: 14,
  STREAM_LISTPACKS: 15,
  HASH_LISTPACK: 16,
  ZSET_LISTPACK: 17,
  LIST_QUICKLIST_2: 18,
  STREAM_LISTPACKS_2: 19,
  SET_LISTPACK: 20,
  STREAM_LISTPACKS_3: 21,
  /** In a `REDIS` file: 7.4 development builds' hashtable hash with field TTLs (absolute times). */
  HASH_METADATA_PRE_GA: 22,
  /** In a `REDIS` file: 7.4 development builds' listpack hash with field TTLs (no minExpire first). */
  HASH_LISTPACK_EX_PRE_GA: 23,
  /** In a `VALKEY` file: Valkey 9's hash with field TTLs (same byte as HASH_METADATA_PRE_GA). */
  VALKEY_HASH_2: 22,
  HASH_METADATA: 24,
  HASH_LISTPACK_EX: 25,
} as const;

/** RDB opcodes: every byte from here up is an opcode, everything below a value type. */
export const RDB_OPCODE = {
  SLOT_INFO: 244,
  FUNCTION2: 245,
  FUNCTION_PRE_GA: 246,
  MODULE_AUX: 247,
  IDLE: 248,
  FREQ: 249,
  AUX: 250,
  RESIZEDB: 251,
  EXPIRETIME_MS: 252,
  EXPIRETIME: 253,
  SELECTDB: 254,
  EOF: 255,
} as const;

export const FIRST_OPCODE = RDB_OPCODE.SLOT_INFO;

const T = RDB_TYPE;

/** Redis type and encoding name of each supported value type byte (undefined: unsupported). */
const SUPPORTED: ReadonlyArray<readonly [number, RedisType, string]> = [
  [T.STRING, 'string', 'string'],
  [T.LIST, 'list', 'list'],
  [T.SET, 'set', 'set'],
  [T.ZSET, 'zset', 'zset'],
  [T.HASH, 'hash', 'hash'],
  [T.ZSET_2, 'zset', 'zset-2'],
  [T.MODULE_2, 'module', 'module-2'],
  [T.HASH_ZIPMAP, 'hash', 'hash-zipmap'],
  [T.LIST_ZIPLIST, 'list', 'list-ziplist'],
  [T.SET_INTSET, 'set', 'set-intset'],
  [T.ZSET_ZIPLIST, 'zset', 'zset-ziplist'],
  [T.HASH_ZIPLIST, 'hash', 'hash-ziplist'],
  [T.LIST_QUICKLIST, 'list', 'list-quicklist'],
  [T.STREAM_LISTPACKS, 'stream', 'stream-listpacks'],
  [T.HASH_LISTPACK, 'hash', 'hash-listpack'],
  [T.ZSET_LISTPACK, 'zset', 'zset-listpack'],
  [T.LIST_QUICKLIST_2, 'list', 'list-quicklist-2'],
  [T.STREAM_LISTPACKS_2, 'stream', 'stream-listpacks-2'],
  [T.SET_LISTPACK, 'set', 'set-listpack'],
  [T.STREAM_LISTPACKS_3, 'stream', 'stream-listpacks-3'],
];

/** Types 22 and up in a `REDIS` file. */
const REDIS_ONLY: ReadonlyArray<readonly [number, RedisType, string]> = [
  [T.HASH_METADATA_PRE_GA, 'hash', 'hash-metadata-pre-ga'],
  [T.HASH_LISTPACK_EX_PRE_GA, 'hash', 'hash-listpack-ex-pre-ga'],
  [T.HASH_METADATA, 'hash', 'hash-metadata'],
  [T.HASH_LISTPACK_EX, 'hash', 'hash-listpack-ex'],
];

/** Types 22 and up in a `VALKEY` file. */
const VALKEY_ONLY: ReadonlyArray<readonly [number, RedisType, string]> = [[T.VALKEY_HASH_2, 'hash', 'hash-2']];

/** What the parser knows of each type byte in one file flavour; arrays indexed by type byte (a lookup per entry, no hashing). */
export interface TypeTable {
  readonly valkey: boolean;
  readonly redisType: ReadonlyArray<RedisType | undefined>;
  readonly encoding: ReadonlyArray<string | undefined>;
}

function typeTable(valkey: boolean): TypeTable {
  const rows = [...SUPPORTED, ...(valkey ? VALKEY_ONLY : REDIS_ONLY)];
  const redisType = new Array<RedisType | undefined>(FIRST_OPCODE).fill(undefined);
  const encoding = new Array<string | undefined>(FIRST_OPCODE).fill(undefined);
  for (const [t, type, enc] of rows) {
    redisType[t] = type;
    encoding[t] = enc;
  }
  return { valkey, redisType, encoding };
}

export const REDIS_TYPES: TypeTable = typeTable(false);
export const VALKEY_TYPES: TypeTable = typeTable(true);

/**
 * Redis type of each type byte readable in either flavour (22 is a hash in both), for what is
 * the same whatever the magic (the value kind of a type byte).
 */
export const REDIS_TYPE_OF: ReadonlyArray<RedisType | undefined> = REDIS_TYPES.redisType;

/** Encoding name of each value type byte a `REDIS` file may hold (what DUMP payloads of a Redis server use). */
export const RDB_ENCODING_NAMES: ReadonlyMap<number, string> = new Map(
  [...SUPPORTED, ...REDIS_ONLY].map((t) => [t[0], t[2]]),
);

/** Why a type byte (or opcode) cannot be read; `valkey`: the file has the `VALKEY` magic. */
export function unsupportedType(t: number, valkey = false): string {
  if (t === T.MODULE_PRE_GA) return 'value type 6 (module value in the 4.0 pre-release format) is not supported';
  if (valkey && t > T.VALKEY_HASH_2 && t < FIRST_OPCODE) {
    const redis = t <= T.HASH_LISTPACK_EX ? ` (a Redis 7.4 hash type in a REDIS file, but the magic says Valkey)` : '';
    return `value type ${t} is not a Valkey value type${redis}: Valkey 9 writes no type above 22, so this file comes from a newer Valkey or is corrupt`;
  }
  return `unknown value type or opcode ${t}`;
}
