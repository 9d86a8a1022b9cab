import { describe, expect, it } from 'vitest';
import { PackedArgs, packedArgsOf } from '../../../services/events/packed-args.js';
import { encodeCommandChunks, encodeCommands } from '../../../services/destination/resp-codec.js';
import { argsBytes } from '../../../services/destination/translate.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { decodeBatch, encodeBatch, encodeEvent } from '../../../services/events/codec.js';
import type { CommandEvent } from '../../../services/events/model.js';
import { command } from './fixtures.js';

function packed(args: Buffer[]): Buffer[] {
  const p = new PackedArgs();
  for (const a of args) p.push(a);
  return p.view();
}

const b = (s: string) => Buffer.from(s);

describe('PackedArgs', () => {
  const args = [b('HSET'), b('h'), b('f0'), Buffer.alloc(0), b('f1'), Buffer.alloc(70_000, 0x76)];

  it('reads as the Buffer[] it packs: length, elements, iteration, array methods', () => {
    const v = packed(args);
    expect(Array.isArray(v)).toBe(true);
    expect(v.length).toBe(6);
    expect(v[0].toString()).toBe('HSET');
    expect(v[3].length).toBe(0);
    expect(v[6]).toBeUndefined();
    expect(5 in v && !(6 in v)).toBe(true);
    expect([...v].map(String)).toEqual(args.map(String));
    expect(v.slice(1, 3).map(String)).toEqual(['h', 'f0']);
    expect(v.map((a) => a.length)).toEqual(args.map((a) => a.length));
    expect(Object.keys(v)).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(v).toEqual(args);
  });

  it('extends its last argument in place, empty arguments and empty extensions included', () => {
    const p = new PackedArgs();
    expect(() => p.extendLast(b('x'))).toThrow(ReplistreamError);
    p.push(b('SET'));
    p.push(Buffer.alloc(0));
    p.extendLast(Buffer.alloc(0));
    p.extendLast(b('ke'));
    p.extendLast(b('y'));
    p.push(b('v'));
    expect(p.view().map(String)).toEqual(['SET', 'key', 'v']);
  });

  it('is read-only', () => {
    const v = packed(args);
    expect(() => {
      v[0] = b('x');
    }).toThrow(/read-only/);
    expect(() => v.push(b('x'))).toThrow(/read-only/);
    expect(v.length).toBe(6);
  });

  it('grows past its first room: a million arguments', () => {
    const p = new PackedArgs();
    for (let i = 0; i < 1_000_000; i++) p.push(b(`f${i}`));
    const v = p.view();
    expect(v.length).toBe(1_000_000);
    expect(v[999_999].toString()).toBe('f999999');
    expect(v[123_456].toString()).toBe('f123456');
    expect(packedArgsOf(v)!.count).toBe(1_000_000);
  });

  it('a decoded command of very many arguments comes packed, equal to what avsc reads', () => {
    const args = [b('HSET'), b('h'), ...Array.from({ length: 70_000 }, (_, i) => b(`x${i}`))];
    const e = command([args, [b('PING')]]);
    const body = encodeBatch([e]);
    const [fast] = decodeBatch(body) as CommandEvent[];
    expect(packedArgsOf(fast.commands[0])?.count).toBe(70_002);
    expect(packedArgsOf(fast.commands[1])).toBeNull();
    expect(fast.commands[0]).toEqual(args);
    expect(encodeEvent(fast).equals(encodeEvent(e))).toBe(true);
  });

  it('is written by the RESP encoder from its storage, the same bytes; its size is counted without views', () => {
    const v = packed(args);
    expect(packedArgsOf(v)).not.toBeNull();
    expect(packedArgsOf(args)).toBeNull();
    const commands = [[b('MULTI')], v, [b('EXEC')]];
    const plain = [[b('MULTI')], args, [b('EXEC')]];
    const chunks = encodeCommandChunks(commands);
    expect(Buffer.concat(chunks).equals(encodeCommands(plain))).toBe(true);
    expect(chunks).toHaveLength(3); // the 70,000-byte argument by reference
    expect(chunks[1].equals(args[5])).toBe(true);
    expect(Buffer.concat(encodeCommandChunks(commands, 1 << 30)).equals(encodeCommands(plain))).toBe(true);
    expect(argsBytes(v)).toBe(argsBytes(args));
  });
});
