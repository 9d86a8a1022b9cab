/** Public surface of the RDB parser. */
export {
  RdbParser,
  parseRdbStream,
  parseRdbFile,
  RDB_TYPE,
  RDB_OPCODE,
  RDB_ENCODING_NAMES,
  type RdbParserOptions,
  type RdbItem,
  type RdbEntry,
} from './parser.js';
export { Crc64, crc64 } from './crc64.js';
export { lzfDecompress } from './lzf.js';
export { inspectRdb, toJsonSafe, fromJsonSafe, typedValueToJson, type JsonSafe } from './inspect.js';
export { buildDumpPayload, parseDumpPayload, type DumpPayloadParts } from '../dump-payload.js';
