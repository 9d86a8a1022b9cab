/**
 * Mutation fuzzing with a fixed seed: byte flips, interesting values (length/encoding markers),
 * deletions, insertions, duplications and truncations of the fixtures, fed in random chunks with
 * random options. A mutated input may parse (the checksum is usually off) or fail, but only with
 * ReplistreamError RDB_FORMAT, never an internal error, never a hang. Bounded to ~15 s.
 * A longer run: FUZZ_SEED=1 FUZZ_N=200000 FUZZ_MS=300000 npx vitest run test/unit/rdb/fuzz.test.ts --testTimeout=400000
 */
import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { RdbParser, type RdbParserOptions } from '../../../services/replication/rdb/parser.js';
import { HANDMADE } from './handmade.js';
import { fixtureNames, loadFixture, prng } from './util.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_2026);
const MUTATIONS = Number(process.env.FUZZ_N ?? 10_000);
const BUDGET_MS = Number(process.env.FUZZ_MS ?? 15_000);
const INTERESTING = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0x82, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xf0, 0xf1, 0xf4, 0xfe, 0xff];

const corpus: Buffer[] = [
  ...fixtureNames()
    .map((n) => loadFixture(n).rdb)
    .filter((r) => r.length <= 10_000),
  ...HANDMADE.map((h) => h.rdb).filter((r) => r.length <= 10_000),
];

function mutate(src: Buffer, rnd: () => number): Buffer {
  const int = (n: number): number => Math.floor(rnd() * n);
  let buf = Buffer.from(src);
  const rounds = 1 + int(3);
  for (let r = 0; r < rounds; r++) {
    const at = int(buf.length);
    switch (int(7)) {
      case 0:
        buf[at] = int(256);
        break;
      case 1:
        buf[at] = INTERESTING[int(INTERESTING.length)];
        break;
      case 2:
        buf[at] ^= 1 << int(8);
        break;
      case 3: {
        const n = 1 + int(16);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + n)]);
        break;
      }
      case 4: {
        const ins = Buffer.from(Array.from({ length: 1 + int(8) }, () => (rnd() < 0.5 ? INTERESTING[int(INTERESTING.length)] : int(256))));
        buf = Buffer.concat([buf.subarray(0, at), ins, buf.subarray(at)]);
        break;
      }
      case 5: {
        const n = 1 + int(32);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at, at + n), buf.subarray(at)]);
        break;
      }
      default:
        buf = buf.subarray(0, at);
    }
  }
  return buf;
}

function run(input: Buffer, opts: RdbParserOptions, rnd: () => number): void {
  const p = new RdbParser(opts);
  let off = 0;
  while (off < input.length) {
    const n = rnd() < 0.3 ? 1 + Math.floor(rnd() * 8) : 1 + Math.floor(rnd() * input.length);
    p.push(input.subarray(off, off + n));
    off += n;
  }
  p.finish();
}

describe('fuzz', () => {
  it(`${MUTATIONS} seeded mutations only ever throw RDB_FORMAT`, () => {
    const rnd = prng(SEED);
    const started = Date.now();
    let parsed = 0;
    let failed = 0;
    let done = 0;
    for (; done < MUTATIONS && Date.now() - started < BUDGET_MS; done++) {
      const base = corpus[Math.floor(rnd() * corpus.length)];
      const input = mutate(base, rnd);
      const opts: RdbParserOptions = {
        verifyChecksum: rnd() < 0.2,
        maxEntryBytes: rnd() < 0.3 ? 1 + Math.floor(rnd() * 200) : undefined,
      };
      try {
        run(input, opts, rnd);
        parsed++;
      } catch (e) {
        if (!(e instanceof ReplistreamError) || e.code !== 'RDB_FORMAT' || e.details?.internal) {
          throw new Error(`mutation ${done} (input ${input.toString('hex').slice(0, 400)}…, opts ${JSON.stringify(opts)}) threw ${String((e as Error)?.stack ?? e)}`);
        }
        expect(e.message).toMatch(/offset \d+/);
        failed++;
      }
    }
    expect(done).toBeGreaterThanOrEqual(Math.min(MUTATIONS, 1500));
    expect(parsed).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);
  });
});
