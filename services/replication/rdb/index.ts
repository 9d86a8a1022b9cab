/** Public surface of the RDB parser. */
export { RdbParser } from './parser.js';
export { parseRdbStream, parseRdbFile } from './parse-stream.js';
export { RDB_TYPE, RDB_OPCODE, RDB_ENCODING_NAMES } from './types.js';
export type { RdbParserOptions, RdbItem, RdbEntry } from './items.js';
export { Crc64, crc64 } from './crc64.js';
export { lzfDecompress } from './lzf.js';
export { inspectRdb, toJsonSafe, fromJsonSafe, typedValueToJson, type JsonSafe } from './inspect.js';
export { buildDumpPayload, parseDumpPayload, type DumpPayloadParts } from '../dump-payload.js';
