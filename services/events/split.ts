/**
 * Keeping Kafka records under the broker's limit (G7 in docs/guarantees.md).
 *
 * - `splitForRecordLimit(event, maxBytes)` cuts an event whose encoding would not fit one record
 *   into pieces (`piece: {index, last}`), each fitting alone in a record of `maxBytes`:
 *   - snapshot key: the RESTORE `payload` is sliced (pieces 0…k carry consecutive slices), then the
 *     typed `value`'s elements are spread over pieces (each piece's value holds a slice of the list
 *     items / set members / zset or hash entries / stream entries and groups). Every piece repeats
 *     db, key, type, expireAtMs and pos. A stream piece repeats the stream metadata; a consumer
 *     group (or consumer) may appear in several pieces, each with a slice of its PEL.
 *   - command unit: the `commands` are spread over pieces; piece i has `pos.seq = pos.seq + i`
 *     (model.ts: seq is the piece of a split command), the other fields repeated.
 *   - an element bigger than one record (a 5 MB list item, a 5 MB SET argument …) is itself sliced:
 *     the next piece has `piece.continued = true` and its first element extends the previous
 *     piece's last one (bytes appended; for a command or stream entry, its first argument/field is
 *     appended to the last one and the others follow).
 * - `PieceAssembler` (one per partition, in offset order) rebuilds the whole event from its pieces.
 * - `packBatches(events, maxBytes)` packs consecutive events (split first when needed) into
 *   EventBatch records no bigger than `maxBytes`, order preserved.
 *
 * `maxBytes` bounds a whole record value in the Confluent wire format: the 5-byte header
 * (0x00 + int32 schema id) plus the EventBatch Avro body. Record key, headers and Kafka's own
 * framing come on top: the default 900 000 leaves ~148 KB under the broker's default
 * `message.max.bytes` (1 048 588).
 *
 * Where each part lives (re-exported here for importers):
 * - record-limit.ts: the limits (`DEFAULT_MAX_RECORD_BYTES`, `WIRE_HEADER_BYTES`, `maxEventBytes`);
 * - split-event.ts: `splitForRecordLimit` / `splitEncoded`, by split-snapshot-key.ts and
 *   split-command.ts, with the sizes and slicing of slicing.ts;
 * - record-packer.ts: `packEncoded`, `packBatches`, `RecordPacker`;
 * - piece-assembler.ts: `assemblePieces`, `PieceAssembler` (a command by command-series.ts).
 */
export { DEFAULT_MAX_RECORD_BYTES, WIRE_HEADER_BYTES, MIN_RECORD_BYTES, maxEventBytes } from './record-limit.js';
export { splitEncoded, splitForRecordLimit, type EncodedEvent } from './split-event.js';
export { packEncoded, packBatches, RecordPacker, type PackedBatch, type PackOptions, type SealedRecord } from './record-packer.js';
export { seriesPosition, cloneValue, assemblePieces, PieceAssembler, type PieceAssemblerOptions } from './piece-assembler.js';
