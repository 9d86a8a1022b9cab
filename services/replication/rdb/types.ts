/**
 * RDB value type bytes and opcodes (Redis's RDB_TYPE_* and RDB_OPCODE_* in rdb.h), and what the
 * parser knows about each type byte: its Redis type and the encoding name entries report.
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
  HASH_METADATA_PRE_GA: 22,
  HASH_LISTPACK_EX_PRE_GA: 23,
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
  [T.HASH_METADATA, 'hash', 'hash-metadata'],
  [T.HASH_LISTPACK_EX, 'hash', 'hash-listpack-ex'],
];

/** Indexed by type byte (plain arrays: a lookup per entry, no hashing). */
export const REDIS_TYPE_OF: ReadonlyArray<RedisType | undefined> = table((t) => t[1]);
export const ENCODING_OF: ReadonlyArray<string | undefined> = table((t) => t[2]);

function table<V>(pick: (t: readonly [number, RedisType, string]) => V): Array<V | undefined> {
  const out: Array<V | undefined> = new Array<V | undefined>(FIRST_OPCODE).fill(undefined);
  for (const t of SUPPORTED) out[t[0]] = pick(t);
  return out;
}

/** Encoding name of each supported value type byte. */
export const RDB_ENCODING_NAMES: ReadonlyMap<number, string> = new Map(SUPPORTED.map((t) => [t[0], t[2]]));

/** Why a type byte (or opcode) cannot be read. */
export function unsupportedType(t: number): string {
  switch (t) {
    case T.MODULE_PRE_GA:
      return 'value type 6 (module value in the 4.0 pre-release format) is not supported';
    case T.HASH_METADATA_PRE_GA:
      return 'value type 22 (hash with field TTLs in the 7.4 release-candidate format, or Valkey 9 HASH_2) is not supported';
    case T.HASH_LISTPACK_EX_PRE_GA:
      return 'value type 23 (listpack hash with field TTLs, 7.4 release-candidate format) is not supported';
    default:
      return `unknown value type or opcode ${t}`;
  }
}
