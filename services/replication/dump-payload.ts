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
  if (payload.length < 11) {
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
    rdbVersion: payload.readUInt16LE(n - 10),
    checksum,
  };
}
