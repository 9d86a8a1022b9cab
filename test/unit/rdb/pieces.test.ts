/**
 * Piece mode: with a tiny maxEntryBytes, big keys arrive in pieces (payload null, numbered,
 * the last one flagged) whose concatenation equals the whole value; memory stays bounded by the
 * limit, not by the key.
 */
import { describe, expect, it } from 'vitest';
import type { TypedValue } from '../../../services/events/model.js';
import { ELEMENT_OVERHEAD } from '../../../services/replication/rdb/entry.js';
import { RdbParser, type RdbEntry } from '../../../services/replication/rdb/parser.js';
import { b, len, lzfStr, rdbFile, selectDb, str } from './builders.js';
import { HANDMADE } from './handmade.js';
import { canon, entries, fixtureNames, keyId, loadFixture, mergePieces, parseWhole, prng, splitEvery } from './util.js';

const files: Array<{ name: string; rdb: Buffer }> = [
  ...fixtureNames().map((name) => ({ name, rdb: loadFixture(name).rdb })),
  ...HANDMADE.map((h) => ({ name: `handmade:${h.name}`, rdb: h.rdb })),
];

function elementSizes(v: TypedValue): number[] {
  switch (v.type) {
    case 'string':
      return [v.value.length];
    case 'list':
      return v.items.map((x) => x.length);
    case 'set':
      return v.members.map((x) => x.length);
    case 'zset':
      return v.entries.map((e) => e.member.length + 8);
    case 'hash':
      return v.entries.map((e) => e.field.length + e.value.length);
    case 'stream':
      return v.stream.entries.map((e) => 16 + e.fields.reduce((a, f) => a + f.length, 0));
    default:
      return [0];
  }
}

describe('pieces', () => {
  for (const f of files) {
    for (const limit of [1, 16, 100, 1000]) {
      it(`${f.name}, maxEntryBytes ${limit}: pieces join up to the whole values`, () => {
        const whole = new Map(entries(parseWhole(f.rdb).items).map((e) => [keyId(e), e]));
        const got = entries(parseWhole(f.rdb, { maxEntryBytes: limit }).items);
        const merged = mergePieces(got);
        expect([...merged.keys()].sort()).toEqual([...whole.keys()].sort());
        for (const [id, m] of merged) {
          const w = whole.get(id)!;
          expect(canon(m.value), id).toBe(canon(w.value));
        }
        for (const e of got) {
          const w = whole.get(keyId(e))!;
          expect({ db: e.db, type: e.type, encoding: e.encoding, expireAtMs: e.expireAtMs, idle: e.idle, freq: e.freq, offset: e.offset }).toEqual({
            db: w.db, type: w.type, encoding: w.encoding, expireAtMs: w.expireAtMs, idle: w.idle, freq: w.freq, offset: w.offset,
          });
          if (e.piece) {
            expect(e.payload).toBeNull();
            if (e.value.type === 'string' && !e.piece.last) expect(e.value.value.length).toBe(limit);
            if (e.value.type !== 'string' && !e.piece.last && e.piece.index > 0) {
              // A piece closes at the first element that reaches the limit (ELEMENT_OVERHEAD bytes
              // counted per element). The first piece holds what was read while the entry still
              // looked small (bounded by the serialized size instead).
              const sizes = elementSizes(e.value);
              const total = sizes.reduce((a, x) => a + x + ELEMENT_OVERHEAD, 0);
              expect(total).toBeGreaterThanOrEqual(limit);
              expect(total - (sizes[sizes.length - 1] + ELEMENT_OVERHEAD)).toBeLessThan(limit);
            }
          } else {
            expect(e.payload?.equals(w.payload!)).toBe(true);
          }
        }
      });
    }
  }

  it('big keys of every type are split at 100 bytes, small ones are not', () => {
    const got = entries(parseWhole(loadFixture('big').rdb, { maxEntryBytes: 100 }).items);
    const count = new Map<string, number>();
    for (const e of got) count.set(e.key.toString(), (count.get(e.key.toString()) ?? 0) + 1);
    for (const k of ['big:list', 'big:set', 'big:zset', 'big:hash', 'big:stream', 'big:string', 'big:lzf', 'big:ints']) {
      expect(count.get(k), k).toBeGreaterThan(2);
    }
    // small: under the limit serialized, and decoded with the per-element overhead counted
    const small = entries(parseWhole(loadFixture('sets').rdb, { maxEntryBytes: 64 * 1024 }).items);
    expect(small.every((e) => e.piece === null)).toBe(true);
  });

  it('a key small on disk but big once decoded (many short elements, LZF) goes in pieces', () => {
    const rdb = loadFixture('big').rdb;
    const whole = entries(parseWhole(rdb, { maxEntryBytes: 1 << 30 }).items).find((e) => e.key.toString() === 'big:list')!;
    const limit = whole.payload!.length + 1; // the serialized entry fits...
    const sizes = elementSizes(whole.value);
    expect(sizes.reduce((a, x) => a + x + ELEMENT_OVERHEAD, 0)).toBeGreaterThan(2 * limit); // ...its decoded elements do not
    const got = entries(parseWhole(rdb, { maxEntryBytes: limit }).items).filter((e) => e.key.toString() === 'big:list');
    expect(got.length).toBeGreaterThan(1);
    expect(got.every((e) => e.payload === null)).toBe(true);
    expect(canon(mergePieces(got).get(keyId(whole))!.value)).toBe(canon(whole.value));
  });

  it('a stream in pieces: entries in every piece, metadata and groups in the last', () => {
    const got = entries(parseWhole(loadFixture('big').rdb, { maxEntryBytes: 200 }).items).filter((e) => e.key.toString() === 'big:stream');
    expect(got.length).toBeGreaterThan(3);
    for (const e of got.slice(0, -1)) {
      if (e.value.type !== 'stream') throw new Error('not a stream');
      expect(e.value.stream.entries.length).toBeGreaterThan(0);
      expect(e.value.stream.groups).toEqual([]);
    }
    const last = got[got.length - 1].value;
    if (last.type !== 'stream') throw new Error('not a stream');
    expect(last.stream.length).toBe(100);
    expect(last.stream.groups.map((g) => g.name.toString())).toEqual(['grp']);
  });

  describe('bounded memory on keys much bigger than the limit', () => {
    function feed(rdb: Buffer, limit: number, chunk: number): { items: RdbEntry[]; maxBuffer: number } {
      const p = new RdbParser({ maxEntryBytes: limit });
      const items: RdbEntry[] = [];
      let maxBuffer = 0;
      for (const c of splitEvery(rdb, chunk)) {
        for (const it of p.push(c)) if (it.kind === 'entry') items.push(it);
        // White-box: the parser's input buffer.
        maxBuffer = Math.max(maxBuffer, (p as unknown as { buf: Buffer }).buf.length);
      }
      p.finish();
      return { items, maxBuffer };
    }

    it('a 12 MB list (type 1) with a 256 KiB limit', () => {
      const n = 120_000;
      const parts: Buffer[] = [selectDb(0), b([1]), str('huge:list'), len(n)];
      for (let i = 0; i < n; i++) parts.push(str(`element-${String(i).padStart(8, '0')}-${'p'.repeat(80)}`));
      const rdb = rdbFile(10, parts);
      const { items, maxBuffer } = feed(rdb, 256 * 1024, 64 * 1024);
      expect(items.length).toBeGreaterThan(20);
      let count = 0;
      items.forEach((e, i) => {
        expect(e.piece).toEqual({ index: i, last: i === items.length - 1 });
        if (e.value.type === 'list') {
          expect(e.value.items[0].toString()).toBe(`element-${String(count).padStart(8, '0')}-${'p'.repeat(80)}`);
          count += e.value.items.length;
        }
      });
      expect(count).toBe(n);
      expect(maxBuffer).toBeLessThan(1024 * 1024);
    });

    it('a 20 MB plain string with a 1 MiB limit: exact slices', () => {
      const data = Buffer.alloc(20 * 1024 * 1024 + 123);
      const rnd = prng(5);
      for (let i = 0; i < data.length; i += 4096) data[i] = Math.floor(rnd() * 256);
      const rdb = rdbFile(10, [selectDb(0), b([0]), str('huge:string'), len(data.length), data]);
      const { items, maxBuffer } = feed(rdb, 1024 * 1024, 64 * 1024);
      expect(items.length).toBe(21);
      const joined = Buffer.concat(items.map((e) => (e.value.type === 'string' ? e.value.value : Buffer.alloc(0))));
      expect(joined.equals(data)).toBe(true);
      expect(items.slice(0, -1).every((e) => e.value.type === 'string' && e.value.value.length === 1024 * 1024)).toBe(true);
      expect(maxBuffer).toBeLessThan(4 * 1024 * 1024);
    });

    it('a big LZF string is decompressed as a stream, in exact slices', () => {
      const rnd = prng(9);
      const data = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = rnd() < 0.5 ? 97 : Math.floor(rnd() * 256);
      const rdb = rdbFile(10, [selectDb(0), b([0]), str('huge:lzf'), lzfStr(data)]);
      for (const chunk of [1000, 65536]) {
        const { items, maxBuffer } = feed(rdb, 200_000, chunk);
        expect(items.every((e) => e.encoding === 'string-lzf' && e.payload === null)).toBe(true);
        const joined = Buffer.concat(items.map((e) => (e.value.type === 'string' ? e.value.value : Buffer.alloc(0))));
        expect(joined.equals(data)).toBe(true);
        expect(items.slice(0, -1).every((e) => e.value.type === 'string' && e.value.value.length === 200_000)).toBe(true);
        expect(maxBuffer).toBeLessThan(1024 * 1024);
      }
    });
  });
});
