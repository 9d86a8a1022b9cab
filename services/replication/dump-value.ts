/**
 * The typed value inside a DUMP / RESTORE payload, for a destination that cannot RESTORE the
 * payload itself (an RDB format newer than it reads) and gets typed writes instead.
 *
 * A payload holds a value exactly as an RDB file does after the key, so it is read by the RDB
 * parser itself: wrapped into the smallest RDB that holds one key (header of the payload's own
 * RDB version, SELECTDB 0, type byte, a one-byte key, the value, EOF, a zero checksum), so every
 * encoding the parser knows is known here too, and none is read twice in two places.
 */
import { ReplistreamError } from '../common/errors.js';
import type { TypedValue } from '../events/model.js';
import { parseDumpPayload } from './dump-payload.js';
import { RdbParser } from './rdb/parser.js';

/** The header the payload's value is read under: its own version (`VALKEY0nn` from 80 on). */
function headerFor(rdbVersion: number): string {
  if (rdbVersion >= 80 && rdbVersion <= 999) return `VALKEY${String(rdbVersion).padStart(3, '0')}`;
  // 13–79: formats after the parser's newest; read as the newest (a type it does not know fails by name)
  return `REDIS${String(Math.min(Math.max(rdbVersion, 1), 12)).padStart(4, '0')}`;
}

/** Decodes `payload` (its CRC checked) into a typed value. Throws RDB_FORMAT naming what is wrong. */
export function dumpPayloadValue(payload: Buffer): TypedValue {
  const parts = parseDumpPayload(payload);
  const rdb = Buffer.concat([
    Buffer.from(headerFor(parts.rdbVersion), 'latin1'),
    Buffer.from([0xfe, 0x00, parts.type, 0x01, 0x6b]), // SELECTDB 0, type, key "k"
    parts.value,
    Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 0]), // EOF, checksum 0 ("not computed")
  ]);
  // one piece whatever the size: the value is written as one key (no bound from the payload's size:
  // the parser also counts decoded elements, with their memory overhead, against it)
  const parser = new RdbParser({ maxEntryBytes: Number.MAX_SAFE_INTEGER, verifyChecksum: false, payloads: false });
  let value: TypedValue | null = null;
  try {
    for (const item of parser.push(rdb)) if (item.kind === 'entry') value = item.value;
    parser.finish();
  } catch (err) {
    throw new ReplistreamError('RDB_FORMAT', `cannot read the value of a DUMP payload (type ${parts.type}, RDB version ${parts.rdbVersion}): ${(err as Error).message}`, { cause: err });
  }
  if (!value) throw new ReplistreamError('RDB_FORMAT', `DUMP payload (type ${parts.type}, RDB version ${parts.rdbVersion}) holds no value`);
  return value;
}
