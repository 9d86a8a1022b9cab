import { describe, expect, it } from 'vitest';
import { rehearsalStreamBytes, rehearsalUnits } from '../../../services/events/rehearsal.js';
import { CommandGrouper, RespParser } from '../../../services/replication/resp/index.js';

const text = (unit: Buffer[][]) => unit.map((args) => args.map((a) => a.toString('latin1')));

describe('the warm-up rehearsal stream', () => {
  it('gives the number of units asked, the same ones every time', () => {
    const a = [...rehearsalUnits(1234)];
    const b = [...rehearsalUnits(1234)];
    expect(a).toHaveLength(1234);
    expect(a.map(text)).toEqual(b.map(text));
  });

  it('holds more than SETs: counters, hashes, expirations, multi-key commands and transactions', () => {
    const units = [...rehearsalUnits(200)];
    const names = new Set(units.flatMap((u) => u.map((args) => args[0].toString())));
    for (const n of ['SET', 'INCR', 'HSET', 'LPUSH', 'SADD', 'ZADD', 'PEXPIREAT', 'DEL', 'MSET']) expect(names).toContain(n);
    expect(units.some((u) => u.length > 1)).toBe(true);
    // every key is under the rehearsal's own prefix
    for (const u of units) for (const args of u) if (args[0].toString() !== 'MSET') expect(args[1].toString()).toMatch(/^rehearsal\.replistream:/);
  });

  it('as replication-stream bytes, reads back as the same units (a transaction in MULTI/EXEC)', () => {
    const units = [...rehearsalUnits(300)];
    const bytes = rehearsalStreamBytes(units);
    const parser = new RespParser();
    const grouper = new CommandGrouper({ db: 3 });
    const back: Buffer[][][] = [];
    for (const cmd of parser.push(bytes)) {
      const unit = grouper.push(cmd);
      if (unit) {
        expect(unit.db).toBe(3);
        back.push(unit.commands);
      }
    }
    expect(back.map(text)).toEqual(units.map(text));
    expect(grouper.offset).toBe(bytes.length);
  });
});
