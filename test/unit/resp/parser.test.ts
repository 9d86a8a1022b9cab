import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { RespParser, type RespCommand } from '../../../services/replication/resp/index.js';
import { BAD_STREAMS, FIXTURES, type ExpectedCommand } from './fixtures.js';
import { packedArgsOf } from '../../../services/events/packed-args.js';

const BASE = 1_000_000; // a non-zero starting offset, to see offsets are not relative

function simplify(cmds: RespCommand[]): ExpectedCommand[] {
  return cmds.map((c) => ({ args: c.args.map((a) => a.toString('latin1')), offset: c.offset - BASE, size: c.size }));
}

function feed(chunks: Buffer[], views = false, packArgsFrom = 0): { cmds: RespCommand[]; parser: RespParser } {
  const parser = new RespParser({ offset: BASE, views, packArgsFrom });
  const cmds: RespCommand[] = [];
  for (const c of chunks) cmds.push(...parser.push(c));
  return { cmds, parser };
}

/** Whole, byte by byte, and split in two at every boundary. */
function splittings(bytes: Buffer): Array<{ how: string; chunks: Buffer[] }> {
  const out: Array<{ how: string; chunks: Buffer[] }> = [{ how: 'whole', chunks: [bytes] }];
  const bytewise: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bytewise.push(bytes.subarray(i, i + 1));
  out.push({ how: 'byte by byte', chunks: bytewise });
  for (let i = 0; i <= bytes.length; i++) out.push({ how: `split at ${i}`, chunks: [bytes.subarray(0, i), bytes.subarray(i)] });
  return out;
}

describe('RespParser', () => {
  for (const fx of FIXTURES) {
    it(`parses "${fx.name}" whole, byte by byte and split at every boundary`, () => {
      for (const { how, chunks } of splittings(fx.bytes)) {
        const { cmds, parser } = feed(chunks);
        expect(simplify(cmds), how).toEqual(fx.commands);
        expect(parser.offset, how).toBe(BASE + fx.bytes.length);
        expect(parser.idle, how).toBe(true);
      }
    });
  }

  it('with views: the same commands whole, byte by byte and split at every boundary (copied chunks, each fed once)', () => {
    for (const fx of FIXTURES) {
      for (const { how, chunks } of splittings(fx.bytes)) {
        const { cmds, parser } = feed(chunks.map((c) => Buffer.from(c)), true);
        expect(simplify(cmds), `${fx.name}, ${how}`).toEqual(fx.commands);
        expect(parser.offset, how).toBe(BASE + fx.bytes.length);
      }
    }
  });

  it('packed arguments (packArgsFrom): the same commands whole, byte by byte and split at every boundary', () => {
    for (const packFrom of [1, 2, 3]) {
      let packed = 0;
      for (const fx of FIXTURES) {
        for (const { how, chunks } of splittings(fx.bytes)) {
          const { cmds, parser } = feed(chunks.map((c) => Buffer.from(c)), true, packFrom);
          expect(simplify(cmds), `${fx.name}, ${how}, from ${packFrom}`).toEqual(fx.commands);
          expect(parser.offset, how).toBe(BASE + fx.bytes.length);
          // arrays of enough arguments are packed (inline commands never are)
          for (const c of cmds) if (packedArgsOf(c.args)) packed++;
          for (const c of cmds) if (c.args.length < packFrom) expect(packedArgsOf(c.args)).toBeNull();
        }
      }
      expect(packed).toBeGreaterThan(100);
    }
  });

  it('packs a command of many arguments, none a view of a chunk', () => {
    const args = Array.from({ length: 5000 }, (_, i) => `f${i}`);
    const bytes = Buffer.from(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}*1\r\n$4\r\nPING\r\n`);
    const parser = new RespParser({ views: true, packArgsFrom: 1000 });
    const cmds: RespCommand[] = [];
    for (let i = 0; i < bytes.length; i += 777) {
      const chunk = Buffer.from(bytes.subarray(i, i + 777));
      cmds.push(...parser.push(chunk));
      chunk.fill(0x58);
    }
    expect(cmds.map((c) => c.args.length)).toEqual([5000, 1]);
    expect(packedArgsOf(cmds[0].args)?.count).toBe(5000);
    expect(packedArgsOf(cmds[1].args)).toBeNull();
    expect(cmds[0].args.map(String)).toEqual(args);
    expect(cmds[0].size).toBe(bytes.length - 14);
  });

  it('with views: an argument within one chunk is a view of it, one spread over chunks a copy', () => {
    const chunk = Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva');
    const parser = new RespParser({ views: true });
    expect(parser.push(chunk)).toEqual([]);
    const [cmd] = parser.push(Buffer.from('lue\r\n'));
    expect(cmd.args.map(String)).toEqual(['SET', 'k', 'value']);
    chunk.fill(0x58); // only a view sees it (never done by a real caller: see the option)
    expect(cmd.args.map(String)).toEqual(['XXX', 'X', 'value']);
  });

  it('parses every fixture concatenated, with contiguous offsets', () => {
    const all = Buffer.concat(FIXTURES.map((f) => f.bytes));
    const { cmds } = feed([all]);
    expect(cmds.length).toBe(FIXTURES.reduce((n, f) => n + f.commands.length, 0));
    let at = BASE;
    for (const c of cmds) {
      expect(c.offset).toBe(at);
      at += c.size;
    }
    expect(at).toBe(BASE + all.length);
  });

  it('does not let returned arguments alias the pushed chunk', () => {
    const chunk = Buffer.from('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
    const [cmd] = new RespParser().push(chunk);
    chunk.fill(0x58);
    expect(cmd.args.map(String)).toEqual(['GET', 'k']);
  });

  it('reports a partial command and resets to a new offset', () => {
    const p = new RespParser({ offset: 10 });
    expect(p.push(Buffer.from('*2\r\n$3\r\nSE'))).toEqual([]);
    expect(p.idle).toBe(false);
    expect(p.commandStart).toBe(10);
    expect(p.offset).toBe(20);
    p.reset(10);
    expect(p.idle).toBe(true);
    const [cmd] = p.push(Buffer.from('*1\r\n$4\r\nPING\r\n'));
    expect(cmd.offset).toBe(10);
    expect(cmd.size).toBe(14);
  });

  for (const bad of BAD_STREAMS) {
    it(`rejects ${bad.name} with PROTOCOL, however it is split`, () => {
      const ways = bad.bytes.length > 1000 ? splittings(bad.bytes).slice(0, 2) : splittings(bad.bytes);
      for (const { how, chunks } of ways) {
        let caught: unknown;
        try {
          feed(chunks);
        } catch (err) {
          caught = err;
        }
        expect(caught, how).toBeInstanceOf(ReplistreamError);
        expect((caught as ReplistreamError).code, how).toBe('PROTOCOL');
      }
    });
  }

  it('stays failed after an error', () => {
    const p = new RespParser();
    expect(() => p.push(Buffer.from('*1\r\n:1\r\n'))).toThrow(ReplistreamError);
    expect(() => p.push(Buffer.from('*1\r\n$1\r\na\r\n'))).toThrow(/expected '\$'/);
  });

  it('honours the configured limits', () => {
    expect(() => new RespParser({ maxBulkLength: 10 }).push(Buffer.from('*1\r\n$11\r\n'))).toThrow(/exceeds the limit/);
    expect(() => new RespParser({ maxArgs: 2 }).push(Buffer.from('*3\r\n'))).toThrow(/exceeds the limit/);
    expect(() => new RespParser({ maxLineLength: 8 }).push(Buffer.from('PING PING PING\r\n'))).toThrow(/line longer/);
  });

  it('parses a large bulk string spread over many chunks', () => {
    const value = Buffer.alloc(5 * 1024 * 1024, 0x61);
    const bytes = Buffer.concat([Buffer.from(`*2\r\n$3\r\nSET\r\n$${value.length}\r\n`), value, Buffer.from('\r\n')]);
    const p = new RespParser();
    const cmds: RespCommand[] = [];
    for (let i = 0; i < bytes.length; i += 65536) cmds.push(...p.push(bytes.subarray(i, i + 65536)));
    expect(cmds).toHaveLength(1);
    expect(cmds[0].args[1].equals(value)).toBe(true);
    expect(cmds[0].size).toBe(bytes.length);
  });

  it('copies an argument spanning chunks as it comes, keeping no chunk (views or not)', () => {
    const bytes = Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n*1\r\n$4\r\nPING\r\n');
    for (const views of [false, true]) {
      for (let cut = 1; cut < bytes.length; cut++) {
        const p = new RespParser({ views });
        const a = Buffer.from(bytes.subarray(0, cut));
        const b = Buffer.from(bytes.subarray(cut));
        const cmds = p.push(a);
        a.fill(0x58); // a chunk reused once pushed: only arguments whole in it may be views (views: true)
        cmds.push(...p.push(b));
        const spans = (arg: number, len: number) => cut > arg && cut < arg + len; // the cut falls inside it
        const value = bytes.indexOf('0123456789');
        if (!views || spans(value, 10)) expect(cmds[0].args[2].toString(), `cut ${cut}`).toBe('0123456789');
        expect(cmds.map((c) => c.args.length)).toEqual([3, 1]);
        expect(cmds[1].args[0].toString()).toBe('PING');
      }
    }
  });
});
