/**
 * The parser against RDB files written by a real redis-server 7.0.15 (test/fixtures/rdb, made by
 * generate.ts): every key, value by value, against what the server itself reported; payloads
 * byte for byte against the server's DUMP. (RESTORE of our payloads into a fresh server, which
 * needs a running one, is in test/integration/rdb/redis-agrees.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { fromJsonSafe, typedValueToJson } from '../../../services/replication/rdb/inspect.js';
import type { RdbEntry } from '../../../services/replication/rdb/parser.js';
import { parseDumpPayload } from '../../../services/replication/dump-payload.js';
import { normalizeValue, type ExpectedKey } from './live.js';
import { entries, fixtureNames, keyId, loadFixture, parseWhole } from './util.js';

const names = fixtureNames();

function expectedId(k: ExpectedKey): string {
  return `${k.db}/${fromJsonSafe(k.key as never).toString('hex')}`;
}

describe('fixtures from redis-server 7.0.15', () => {
  it('has the fixtures', () => {
    expect(names).toEqual(
      expect.arrayContaining(['strings', 'lists', 'sets', 'zsets', 'hashes', 'streams', 'dbs-functions', 'lfu', 'lru', 'big']),
    );
  });

  for (const name of names) {
    describe(name, () => {
      const { rdb, expected } = loadFixture(name);
      const { items, consumed } = parseWhole(rdb);
      const byId = new Map<string, RdbEntry>();
      for (const e of entries(items)) byId.set(keyId(e), e);

      it('header, aux, end', () => {
        expect(items[0]).toEqual({ kind: 'header', version: expected.rdbVersion, offset: 0 });
        const auxes = new Map(items.flatMap((i) => (i.kind === 'aux' ? [[i.key.toString(), i.value.toString()]] : [])));
        expect(auxes.get('redis-ver')).toBe(expected.server);
        expect(auxes.get('redis-bits')).toBe('64');
        const end = items[items.length - 1];
        expect(end.kind).toBe('end');
        if (end.kind === 'end') {
          expect(end.offset).toBe(rdb.length - 9);
          expect(end.checksum).toBe(rdb.readBigUInt64LE(rdb.length - 8));
          expect(end.checksum).not.toBe(0n);
        }
        expect(consumed).toBe(rdb.length);
      });

      it('same keys as the server', () => {
        expect([...byId.keys()].sort()).toEqual(expected.keys.map(expectedId).sort());
        for (const e of byId.values()) expect(e.piece).toBeNull();
      });

      for (const k of expected.keys) {
        const label = typeof k.key === 'string' ? k.key : `base64:${k.key.base64}`;
        it(`key ${JSON.stringify(label)} (${k.objectEncoding} → ${k.rdbEncoding})`, () => {
          const e = byId.get(expectedId(k));
          expect(e).toBeDefined();
          if (!e) return;
          expect(e.db).toBe(k.db);
          expect(e.type).toBe(k.type);
          expect(e.encoding).toBe(k.rdbEncoding);
          expect(e.expireAtMs).toBe(k.expireAtMs);
          expect(normalizeValue(k.type, typedValueToJson(e.value))).toEqual(normalizeValue(k.type, k.value));
          // The payload is exactly what DUMP returns for the key.
          expect(e.payload?.toString('base64')).toBe(k.dump);
          expect(() => parseDumpPayload(e.payload!)).not.toThrow();
          if (k.freq !== undefined) expect(e.freq).toBe(k.freq);
          else expect(e.freq).toBeNull();
          if (k.idle !== undefined) {
            expect(e.idle).not.toBeNull();
            expect(Math.abs(e.idle! - k.idle)).toBeLessThanOrEqual(1);
          } else expect(e.idle).toBeNull();
        });
      }

      it('dbs: select and resize items match the keys', () => {
        const dbs = [...new Set(expected.keys.map((k) => k.db))].sort((a, b) => a - b);
        expect(items.filter((i) => i.kind === 'select').map((i) => (i as { db: number }).db)).toEqual(dbs);
        for (const r of items.filter((i) => i.kind === 'resize')) {
          if (r.kind !== 'resize') continue;
          expect(r.size).toBe(expected.keys.filter((k) => k.db === r.db).length);
          expect(r.expires).toBe(expected.keys.filter((k) => k.db === r.db && k.expireAtMs !== null).length);
        }
      });

      it('functions', () => {
        const fns = items.flatMap((i) => (i.kind === 'function' ? [i.code.toString()] : []));
        expect(fns).toEqual(expected.functions);
      });
    });
  }
});

describe('encodings the fixtures must cover', () => {
  it('covers every type × encoding redis 7.0 writes', () => {
    const seen = new Set<string>();
    for (const name of names) for (const k of loadFixture(name).expected.keys) seen.add(k.rdbEncoding);
    expect([...seen].sort()).toEqual(
      [
        'hash',
        'hash-listpack',
        'list-quicklist-2',
        'set',
        'set-intset',
        'stream-listpacks-2',
        'string',
        'string-int',
        'string-lzf',
        'zset-2',
        'zset-listpack',
      ].sort(),
    );
  });

  it('has quicklist nodes that are LZF-compressed and PLAIN', () => {
    // Walk list:long / list:plain payloads: count, then (container, string) per node.
    const { expected } = loadFixture('lists');
    const nodes = (b64: string): Array<{ container: number; lzf: boolean }> => {
      const p = Buffer.from(b64, 'base64');
      let i = 1;
      const readLen = (): number => {
        const c = p[i];
        if (c >> 6 === 0) return (i++, c & 0x3f);
        if (c >> 6 === 1) return ((i += 2), ((c & 0x3f) << 8) | p[i - 1]);
        const v = p.readUInt32BE(i + 1);
        i += 5;
        return v;
      };
      const n = readLen();
      const out: Array<{ container: number; lzf: boolean }> = [];
      for (let k = 0; k < n; k++) {
        const container = readLen();
        if (p[i] === 0xc3) {
          i++;
          const clen = readLen();
          readLen();
          i += clen;
          out.push({ container, lzf: true });
        } else {
          const l = readLen();
          i += l;
          out.push({ container, lzf: false });
        }
      }
      return out;
    };
    const long = expected.keys.find((k) => k.key === 'list:long')!;
    const plain = expected.keys.find((k) => k.key === 'list:plain')!;
    expect(nodes(long.dump).some((n) => n.lzf && n.container === 2)).toBe(true);
    expect(nodes(plain.dump).some((n) => n.container === 1 && !n.lzf)).toBe(true);
    expect(nodes(plain.dump).some((n) => n.container === 1 && n.lzf)).toBe(true);
  });
});
