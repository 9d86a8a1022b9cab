/**
 * Chunking never changes the result: every fixture (from redis-server and hand-built) is fed
 * whole, byte by byte, and split in two at every position (see positions()); the items are the
 * same each time,
 * also in piece mode (tiny maxEntryBytes) and with bytes following the RDB (the replication
 * stream), which must come back from takeRemainder().
 */
import { describe, expect, it } from 'vitest';
import type { RdbParserOptions } from '../../../services/replication/rdb/parser.js';
import { HANDMADE } from './handmade.js';
import { canon, fixtureNames, loadFixture, parseChunks, parseWhole, splitEvery } from './util.js';

const files: Array<{ name: string; rdb: Buffer }> = [
  ...fixtureNames().map((name) => ({ name, rdb: loadFixture(name).rdb })),
  ...HANDMADE.map((h) => ({ name: `handmade:${h.name}`, rdb: h.rdb })),
];

/**
 * Split positions: all of them for files up to 9000 bytes. The two bigger files (`big`, 22 KB, where
 * one parse plus comparison costs ~2 ms, and the 17 KB v6-ziplists) get every position in their
 * first and last 600 bytes, every position within 3 bytes of an entry boundary, and every 7th
 * (big: 37th) position elsewhere; their entry types are all split at every position in the
 * smaller files.
 */
function positions(rdb: Buffer, entryOffsets: number[]): number[] {
  const stride = rdb.length > 20_000 ? 37 : 7;
  if (rdb.length <= 9000) return Array.from({ length: rdb.length - 1 }, (_, i) => i + 1);
  const set = new Set<number>();
  for (let at = 1; at < rdb.length; at++) {
    if (at < 600 || at > rdb.length - 600 || at % stride === 0) set.add(at);
  }
  for (const o of entryOffsets) for (let d = -3; d <= 3; d++) if (o + d > 0 && o + d < rdb.length) set.add(o + d);
  return [...set].sort((a, b) => a - b);
}

function checkSplits(rdb: Buffer, opts: RdbParserOptions): void {
  const whole = parseWhole(rdb, opts);
  const ref = canon(whole.items);
  expect(whole.remainder.length).toBe(0);
  const bytewise = parseChunks(splitEvery(rdb, 1), opts);
  expect(canon(bytewise.items)).toBe(ref);
  const offsets = whole.items.flatMap((i) => (i.kind === 'entry' ? [i.offset] : []));
  for (const at of positions(rdb, offsets)) {
    const two = parseChunks([rdb.subarray(0, at), rdb.subarray(at)], opts);
    const got = canon(two.items);
    if (got !== ref) expect(got, `split at ${at}`).toBe(ref);
  }
}

describe('split at every boundary', () => {
  for (const f of files) {
    it(`${f.name} (${f.rdb.length} bytes)`, () => {
      checkSplits(f.rdb, {});
    });
  }

  for (const f of files.filter((x) => x.name === 'big' || x.name.startsWith('handmade:'))) {
    const limit = f.name === 'big' ? 700 : 40;
    it(`${f.name} in piece mode (maxEntryBytes ${limit})`, () => {
      checkSplits(f.rdb, { maxEntryBytes: limit });
    });
  }

  it('bytes after the RDB come back from takeRemainder, whatever the chunking', () => {
    const { rdb } = loadFixture('strings');
    const tail = Buffer.from('*1\r\n$4\r\nPING\r\n');
    const input = Buffer.concat([rdb, tail]);
    const ref = canon(parseWhole(rdb).items);
    for (const size of [1, 3, 64, 1000, input.length]) {
      const r = parseChunks(splitEvery(input, size));
      expect(canon(r.items)).toBe(ref);
      expect(r.remainder.equals(tail)).toBe(true);
      expect(r.consumed).toBe(rdb.length);
    }
  });
});
