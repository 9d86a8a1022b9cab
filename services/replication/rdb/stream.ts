/**
 * Stream node decoding. A stream is a radix tree of listpacks keyed by a 16-byte master ID
 * (ms u64 BE, seq u64 BE); each listpack starts with a master entry
 *   count, deleted, num-fields, field_1 … field_N, 0
 * and then holds entries
 *   flags, ms-delta, seq-delta, [num-fields, f1, v1, … | v1 … vN when flags & SAMEFIELDS], lp-count
 * with IDs relative to the master ID. Entries flagged DELETED are skipped.
 */
import type { StreamId } from '../../events/model.js';
import { decodeListpack, type LpValue } from './listpack.js';
import { intToBuf, rdbError, u64beBig } from './util.js';

const FLAG_DELETED = 1;
const FLAG_SAMEFIELDS = 2;

export interface StreamEntry {
  id: StreamId;
  fields: Buffer[];
}

/** Reads a 16-byte big-endian stream ID at `src[p]`. */
export function readStreamId(src: Uint8Array, p: number): StreamId {
  return { ms: u64beBig(src, p), seq: u64beBig(src, p + 8) };
}

function asInt(v: LpValue | undefined, offset: number, what: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) {
    const s = v.toString();
    if (/^-?\d+$/.test(s)) return Number(s);
  }
  throw rdbError(offset, `corrupt stream node: ${what} is not an integer`);
}

function asBigInt(v: LpValue | undefined, offset: number, what: string): bigint {
  if (typeof v === 'bigint') return v;
  return BigInt(asInt(v, offset, what));
}

function asBuf(v: LpValue | undefined, offset: number): Buffer {
  if (v === undefined) throw rdbError(offset, 'corrupt stream node: entry overflows the listpack');
  return v instanceof Uint8Array ? (v as Buffer) : intToBuf(v);
}

/**
 * Decodes one stream node (listpack `src[start, end)` under master ID `master`) and appends its
 * live entries to `out`. Returns the number of elements appended.
 */
export function decodeStreamNode(
  master: StreamId,
  src: Uint8Array,
  start: number,
  end: number,
  offset: number,
  out: StreamEntry[],
): number {
  const v: LpValue[] = [];
  decodeListpack(src, start, end, offset, v);
  if (v.length < 4) throw rdbError(offset, 'corrupt stream node: no master entry');
  const count = asInt(v[0], offset, 'master entry count');
  const deleted = asInt(v[1], offset, 'master entry deleted count');
  const nMaster = asInt(v[2], offset, 'master field count');
  if (nMaster < 0 || 3 + nMaster >= v.length) throw rdbError(offset, 'corrupt stream node: bad master field count');
  const masterFields: Buffer[] = new Array(nMaster);
  for (let i = 0; i < nMaster; i++) masterFields[i] = asBuf(v[3 + i], offset);
  let i = 3 + nMaster;
  if (asInt(v[i++], offset, 'master entry terminator') !== 0) {
    throw rdbError(offset, 'corrupt stream node: master entry not terminated by 0');
  }
  const total = count + deleted;
  if (total < 0) throw rdbError(offset, 'corrupt stream node: negative entry count');
  let added = 0;
  for (let e = 0; e < total; e++) {
    if (i + 3 > v.length) throw rdbError(offset, 'corrupt stream node: fewer entries than announced');
    const flags = asInt(v[i++], offset, 'entry flags');
    const msDelta = asBigInt(v[i++], offset, 'entry ms delta');
    const seqDelta = asBigInt(v[i++], offset, 'entry seq delta');
    let fields: Buffer[];
    if (flags & FLAG_SAMEFIELDS) {
      if (i + nMaster > v.length) throw rdbError(offset, 'corrupt stream node: entry overflows the listpack');
      fields = new Array(nMaster * 2);
      for (let k = 0; k < nMaster; k++) {
        fields[2 * k] = masterFields[k];
        fields[2 * k + 1] = asBuf(v[i++], offset);
      }
    } else {
      const n = asInt(v[i++], offset, 'entry field count');
      if (n < 0 || i + 2 * n > v.length) throw rdbError(offset, 'corrupt stream node: entry overflows the listpack');
      fields = new Array(n * 2);
      for (let k = 0; k < 2 * n; k++) fields[k] = asBuf(v[i++], offset);
    }
    asInt(v[i++], offset, 'entry lp-count');
    if (flags & FLAG_DELETED) continue;
    out.push({ id: { ms: master.ms + msDelta, seq: master.seq + seqDelta }, fields });
    added++;
  }
  if (i !== v.length) throw rdbError(offset, 'corrupt stream node: elements after the last entry');
  return added;
}
