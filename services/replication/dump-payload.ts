/**
 * DUMP / RESTORE payloads: `[type byte][value bytes exactly as in an RDB][u16 LE RDB version]
 * [u64 LE CRC-64/Jones of everything before it]`.
 *
 * The capture builds them from the raw bytes of an RDB entry (the type byte and the value that
 * follows the key), so a key is restored byte for byte without re-encoding.
 */
import { ReplistreamError } from '../common/errors.js';
import { Crc64, crc64WriteLE } from './rdb/crc64.js';
import { copyInto } from './rdb/util.js';

/** Bytes a payload adds to the serialized value: the type byte, the version and the CRC. */
export const DUMP_OVERHEAD = 11;

/** Builds a payload from a type byte and `value[start, end)` (the serialized value bytes). */
export function buildDumpPayload(type: number, value: Uint8Array, rdbVersion: number, start = 0, end = value.length): Buffer {
  const n = end - start;
  const out = Buffer.allocUnsafe(n + DUMP_OVERHEAD);
  out[0] = type;
  copyInto(value, start, end, out, 1);
  out[n + 1] = rdbVersion & 0xff;
  out[n + 2] = (rdbVersion >> 8) & 0xff;
  crc64WriteLE(out, 0, n + 3, out, n + 3);
  return out;
}

/**
 * The RDB version a payload was written with: the u16 LE just before its 8-byte CRC-64. The CRC is
 * not checked: this is read once per key on hot paths (the applier choosing between RESTORE and
 * typed writes, the event reader deciding whether a typed value is needed), where a pass over
 * every value would cost more than the write; a corrupt payload is caught when it is restored.
 *
 * Returns -1 for a malformed payload, one shorter than DUMP_OVERHEAD bytes (no room for the type
 * byte, the version and the CRC), so that callers can treat "unknown" apart without a try/catch.
 */
export function payloadRdbVersion(payload: Buffer): number {
  return payload.length < DUMP_OVERHEAD ? -1 : payload.readUInt16LE(payload.length - 10);
}

/** payloadRdbVersion for callers that cannot go on without the version: a malformed payload throws RDB_FORMAT. */
export function requirePayloadRdbVersion(payload: Buffer): number {
  const v = payloadRdbVersion(payload);
  if (v < 0) throw new ReplistreamError('RDB_FORMAT', `DUMP payload of ${payload.length} bytes is too short`);
  return v;
}

export interface DumpPayloadParts {
  type: number;
  /** Serialized value (after the type byte, before the version trailer); a view into the payload. */
  value: Buffer;
  rdbVersion: number;
  checksum: bigint;
}

/**
 * Splits a payload into its parts and checks its CRC (a zero checksum means "not computed" and
 * is accepted, as Redis does). Throws RDB_FORMAT when it is too short or the checksum is wrong.
 */
export function parseDumpPayload(payload: Buffer): DumpPayloadParts {
  if (payload.length < DUMP_OVERHEAD) {
    throw new ReplistreamError('RDB_FORMAT', `DUMP payload of ${payload.length} bytes is too short`, {
      details: { offset: 0 },
    });
  }
  const n = payload.length;
  const checksum = payload.readBigUInt64LE(n - 8);
  if (checksum !== 0n) {
    const crc = new Crc64().update(payload, 0, n - 8);
    if (!crc.equalsLE(payload, n - 8)) {
      throw new ReplistreamError(
        'RDB_FORMAT',
        `DUMP payload checksum mismatch at offset ${n - 8}: stored ${checksum.toString(16)}, computed ${crc.value.toString(16)}`,
        { details: { offset: n - 8 } },
      );
    }
  }
  return {
    type: payload[0],
    value: payload.subarray(1, n - 10),
    rdbVersion: payloadRdbVersion(payload),
    checksum,
  };
}
