import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import {
  CommandGrouper,
  RespParser,
  isGetAck,
  type CommandUnit,
} from '../../../services/replication/resp/index.js';
import { resp } from './fixtures.js';

interface SimpleUnit {
  db: number;
  commands: string[][];
  startOffset: number;
  endOffset: number;
  endDb: number;
}

function simple(u: CommandUnit): SimpleUnit {
  return { ...u, commands: u.commands.map((c) => c.map(String)) };
}

/** Runs bytes through parser + grouper, fed in the given chunks. */
function run(chunks: Buffer[], opts: { offset?: number; db?: number } = {}) {
  const parser = new RespParser({ offset: opts.offset ?? 0 });
  const grouper = new CommandGrouper(opts);
  const units: SimpleUnit[] = [];
  const offsetsAfterEachCommand: number[] = [];
  for (const c of chunks) {
    for (const cmd of parser.push(c)) {
      const u = grouper.push(cmd);
      if (u) units.push(simple(u));
      offsetsAfterEachCommand.push(grouper.offset);
    }
  }
  return { units, grouper, parser, offsetsAfterEachCommand };
}

function everySplit(bytes: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[bytes]];
  const bytewise: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bytewise.push(bytes.subarray(i, i + 1));
  ways.push(bytewise);
  for (let i = 0; i <= bytes.length; i++) ways.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return ways;
}

describe('CommandGrouper', () => {
  it('consumes SELECT, yields lone commands as units with the current db', () => {
    const parts = [resp('SELECT', '2'), resp('SET', 'a', '1'), resp('PING'), resp('SELECT', '5'), resp('DEL', 'a')];
    const bytes = Buffer.concat(parts);
    const o = (i: number) => parts.slice(0, i).reduce((n, p) => n + p.length, 100);
    const expected: SimpleUnit[] = [
      { db: 2, commands: [['SET', 'a', '1']], startOffset: o(1), endOffset: o(2), endDb: 2 },
      { db: 5, commands: [['DEL', 'a']], startOffset: o(4), endOffset: o(5), endDb: 5 },
    ];
    for (const chunks of everySplit(bytes)) {
      const { units, grouper } = run(chunks, { offset: 100 });
      expect(units).toEqual(expected);
      expect(grouper.offset).toBe(100 + bytes.length);
      expect(grouper.db).toBe(5);
    }
  });

  it('groups MULTI…EXEC into one unit; SELECT inside stays and moves the db after the unit', () => {
    const parts = [
      resp('SELECT', '1'),
      resp('MULTI'),
      resp('SET', 'a', '1'),
      resp('SELECT', '4'),
      resp('SET', 'b', '2'),
      resp('EXEC'),
      resp('INCR', 'c'),
    ];
    const bytes = Buffer.concat(parts);
    const o = (i: number) => parts.slice(0, i).reduce((n, p) => n + p.length, 0);
    const expected: SimpleUnit[] = [
      {
        db: 1,
        commands: [['SET', 'a', '1'], ['SELECT', '4'], ['SET', 'b', '2']],
        startOffset: o(1),
        endOffset: o(6),
        endDb: 4,
      },
      { db: 4, commands: [['INCR', 'c']], startOffset: o(6), endOffset: o(7), endDb: 4 },
    ];
    for (const chunks of everySplit(bytes)) {
      expect(run(chunks).units).toEqual(expected);
    }
  });

  it('does not advance its offset inside an open transaction', () => {
    const parts = [resp('MULTI'), resp('SET', 'a', '1'), resp('SET', 'b', '2'), resp('EXEC')];
    const { offsetsAfterEachCommand, grouper } = run([Buffer.concat(parts.slice(0, 3))]);
    expect(offsetsAfterEachCommand).toEqual([0, 0, 0]);
    expect(grouper.inTransaction).toBe(true);
    expect(grouper.offset).toBe(0);
    grouper.reset(0, 0); // a reconnect: the transaction will be received again
    expect(grouper.inTransaction).toBe(false);
  });

  it('advances past PING, REPLCONF and keepalives without yielding units', () => {
    const bytes = Buffer.concat([
      resp('PING'),
      Buffer.from('\n'),
      resp('REPLCONF', 'GETACK', '*'),
      Buffer.from('PING\r\n'),
    ]);
    const { units, grouper, offsetsAfterEachCommand } = run([bytes], { offset: 7 });
    expect(units).toEqual([]);
    expect(grouper.offset).toBe(7 + bytes.length);
    expect(offsetsAfterEachCommand).toEqual([21, 22, 59, 65]);
  });

  it('drops a DISCARDed transaction and ignores stray EXEC, DISCARD and nested MULTI', () => {
    const bytes = Buffer.concat([
      resp('EXEC'),
      resp('DISCARD'),
      resp('MULTI'),
      resp('SET', 'x', '1'),
      resp('DISCARD'),
      resp('MULTI'),
      resp('MULTI'),
      resp('SET', 'y', '1'),
      resp('EXEC'),
      resp('MULTI'),
      resp('PING'),
      resp('EXEC'),
    ]);
    const { units, grouper } = run([bytes]);
    expect(units.map((u) => u.commands)).toEqual([[['SET', 'y', '1']]]);
    expect(grouper.offset).toBe(bytes.length);
  });

  it('compares command names case-insensitively', () => {
    const bytes = Buffer.concat([resp('select', '9'), resp('multi'), resp('set', 'k', 'v'), resp('exec'), resp('ping')]);
    const { units } = run([bytes]);
    expect(units).toHaveLength(1);
    expect(units[0].db).toBe(9);
    expect(units[0].commands).toEqual([['set', 'k', 'v']]);
  });

  it('rejects a malformed SELECT with PROTOCOL and a gap with INTERNAL', () => {
    const g = new CommandGrouper();
    expect(() => g.push({ args: [Buffer.from('SELECT'), Buffer.from('x')], offset: 0, size: 10 })).toThrow(
      expect.objectContaining({ code: 'PROTOCOL' }),
    );
    const g2 = new CommandGrouper({ offset: 5 });
    let caught: unknown;
    try {
      g2.push({ args: [Buffer.from('PING')], offset: 6, size: 14 });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ReplistreamError);
    expect((caught as ReplistreamError).code).toBe('INTERNAL');
  });

  it('recognises REPLCONF GETACK', () => {
    expect(isGetAck([Buffer.from('REPLCONF'), Buffer.from('GETACK'), Buffer.from('*')])).toBe(true);
    expect(isGetAck([Buffer.from('replconf'), Buffer.from('getack'), Buffer.from('*')])).toBe(true);
    expect(isGetAck([Buffer.from('REPLCONF'), Buffer.from('ACK'), Buffer.from('1')])).toBe(false);
    expect(isGetAck([Buffer.from('SET'), Buffer.from('GETACK')])).toBe(false);
  });
});
