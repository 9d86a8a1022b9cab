import { describe, expect, it } from 'vitest';
import { SnappyCodec, snappyCompress, snappyDecompress } from '../../../services/transport/snappy-codec.js';

/** The raw snappy block of "hello hello hello hello" (a literal, then a copy), as Kafka clients write it. */
const RAW_HELLO = Buffer.from('1714' + Buffer.from('hello ').toString('hex') + '420600', 'hex');

/** Java's snappy-java framing around blocks (magic, version 1, compatible version 1, then length + block). */
function xerial(...blocks: Buffer[]): Buffer {
  const head = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1]);
  const parts: Buffer[] = [head];
  for (const b of blocks) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

describe('snappy codec', () => {
  it('reads a raw snappy block written by another client', () => {
    expect(snappyDecompress(RAW_HELLO).toString()).toBe('hello hello hello hello');
  });

  it('writes raw blocks that read back, empty and large (a record batch of 5 MB)', async () => {
    const codec = SnappyCodec();
    const big = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
    for (const input of [Buffer.alloc(0), Buffer.from('x'), big]) {
      const packed = await codec.compress({ buffer: input });
      expect(packed.subarray(0, 8).equals(Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]))).toBe(false);
      expect((await codec.decompress(packed)).equals(input)).toBe(true);
    }
  });

  it('reads the xerial framing of Java producers, one block or several', () => {
    expect(snappyDecompress(xerial(RAW_HELLO)).toString()).toBe('hello hello hello hello');
    const second = snappyCompress(Buffer.from(' and more'));
    expect(snappyDecompress(xerial(RAW_HELLO, second)).toString()).toBe('hello hello hello hello and more');
  });

  it('says what is wrong with a cut xerial frame or a corrupt block', () => {
    const framed = xerial(RAW_HELLO);
    expect(() => snappyDecompress(framed.subarray(0, framed.length - 2))).toThrow(/xerial framing.*runs past the end/);
    expect(() => snappyDecompress(framed.subarray(0, 18))).toThrow(/xerial framing.*cut short/);
    expect(() => snappyDecompress(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]))).toThrow();
  });
});
