/** The parser's options and the items it emits. */
import type { RedisType, TypedValue } from '../../events/model.js';

export interface RdbParserOptions {
  /**
   * Entries whose serialized value (from their first opcode to the end of the value) is bigger
   * than this are delivered in pieces. Default 8 MiB.
   */
  maxEntryBytes?: number;
  /** Check the CRC-64 stored after the EOF opcode (a stored 0 means "disabled"). Default true. */
  verifyChecksum?: boolean;
  /**
   * Build the RESTORE payload of whole entries. Default true. A consumer that only uses typed
   * values can turn it off (payload is then always null): it saves a copy and a CRC per key.
   */
  payloads?: boolean;
}

export type RdbItem =
  | { kind: 'header'; version: number; offset: number }
  | { kind: 'aux'; key: Buffer; value: Buffer }
  | { kind: 'select'; db: number }
  | { kind: 'resize'; db: number; size: number; expires: number }
  | { kind: 'function'; code: Buffer }
  | { kind: 'module-aux'; moduleId: string; raw: Buffer }
  | RdbEntry
  | { kind: 'end'; offset: number; checksum: bigint | null };

/**
 * One key (or one piece of a big key).
 * - `encoding`: the RDB encoding, named after Redis's RDB_TYPE_* constant (`list-quicklist-2`,
 *   `hash-listpack`, `zset-2`, …); plain strings are `string`, `string-int` or `string-lzf`.
 * - `offset`: file offset of the entry's first byte (its EXPIRETIME/IDLE/FREQ opcode if any,
 *   else its type byte).
 * - `idle`: LRU idle time in seconds, `freq`: LFU counter (only under LRU / LFU maxmemory
 *   policies); null when absent.
 * - `value`: Buffers are the parser's own (never views of the caller's chunks). For a whole
 *   plain string the value bytes are a view into `payload` (same memory, one copy).
 * - pieces: for a non-last stream piece, `value.stream` carries only `entries` (length 0,
 *   lastId 0-0, no groups); the last piece carries the stream's metadata and consumer groups
 *   (groups are never split). A module value in piece mode is a single piece (index 0, last)
 *   without payload. A single element bigger than the limit (one huge field, a PLAIN quicklist
 *   node) is held whole; only top-level strings are sliced.
 */
export interface RdbEntry {
  kind: 'entry';
  db: number;
  key: Buffer;
  type: RedisType;
  encoding: string;
  expireAtMs: number | null;
  idle: number | null;
  freq: number | null;
  value: TypedValue;
  payload: Buffer | null;
  piece: { index: number; last: boolean } | null;
  offset: number;
}
