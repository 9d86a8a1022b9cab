/**
 * What one Kafka record may hold (G7 in docs/guarantees.md), in bytes.
 *
 * `maxBytes` bounds a whole record value in the Confluent wire format: the 5-byte header
 * (0x00 + int32 schema id) plus the EventBatch Avro body. Record key, headers and Kafka's own
 * framing come on top: the default 900 000 leaves ~148 KB under the broker's default
 * `message.max.bytes` (1 048 588).
 */
import { ReplistreamError } from '../common/errors.js';
import { batchBodySize } from './event-scratch.js';

export const DEFAULT_MAX_RECORD_BYTES = 900_000;
/** 0x00 + int32 BE schema id: the Confluent wire header in front of every record value (registry.ts `toWire`). */
export const WIRE_HEADER_BYTES = 5;
/** Below this, a record limit cannot hold a useful piece. */
export const MIN_RECORD_BYTES = 1024;

/** The largest encoded event (`encodeEvent(e).length`) that fits alone in a record of `maxBytes`. */
export function maxEventBytes(maxBytes = DEFAULT_MAX_RECORD_BYTES): number {
  return maxBytes - WIRE_HEADER_BYTES - batchBodySize(1, 0);
}

/** A record limit that is not an integer or is under `MIN_RECORD_BYTES` is a configuration error. */
export function checkRecordLimit(maxBytes: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_RECORD_BYTES) {
    throw new ReplistreamError('CONFIG', `record size limit ${maxBytes} is too small (minimum ${MIN_RECORD_BYTES} bytes)`, {
      setting: 'max-record-bytes',
    });
  }
}
