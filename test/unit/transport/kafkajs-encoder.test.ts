import { createRequire } from 'node:module';
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { installEncoderPatch, REFERENCE_BYTES } from '../../../services/transport/kafkajs-encoder.js';
import { SnappyCodec } from '../../../services/transport/snappy-codec.js';

const require = createRequire(import.meta.url);
type Encoded = { buffer: Buffer; size(): number };
type EncoderCtor = new () => Encoded & { writeInt32(n: number): EncoderLike; writeBytes(b: Buffer): EncoderLike; writeEncoder(e: unknown): EncoderLike };
type EncoderLike = InstanceType<EncoderCtor>;
const Encoder = require('kafkajs/src/protocol/encoder') as EncoderCtor;
const frameRequest = require('kafkajs/src/protocol/request') as (o: object) => Promise<Encoded>;
const produceV3 = require('kafkajs/src/protocol/requests/produce/v3/request') as (o: object) => { encode(): Promise<Encoded> };
const produceV7 = require('kafkajs/src/protocol/requests/produce/v7/request') as (o: object) => { encode(): Promise<Encoded> };
(kafkajs.CompressionCodecs as Record<number, unknown>)[kafkajs.CompressionTypes.Snappy] = SnappyCodec;

/** Deterministic bytes: half random-looking, half repeated (so compression has work on both). */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = i % 64 < 32 ? x >>> 24 : 97;
  }
  return b;
}

/** Sizes around the reference threshold, tiny ones and a few big ones. */
const SIZES = [0, 1, 100, REFERENCE_BYTES - 1, REFERENCE_BYTES, REFERENCE_BYTES + 1, 65_536, 300_000];

function topicData(seed: number) {
  return ['t1', 't2'].map((topic, ti) => ({
    topic,
    partitions: [0, 1, 2].map((partition) => ({
      partition,
      firstSequence: seed + partition,
      messages: SIZES.slice(0, 3 + ((seed + ti + partition) % SIZES.length)).map((size, i) => ({
        key: i % 2 ? bytes(7, i) : null,
        value: bytes(size, seed * 31 + ti * 7 + partition * 3 + i),
        headers: i % 3 === 0 ? { h: 'v', big: bytes(i === 0 ? REFERENCE_BYTES + 5 : 3, i) } : {},
        timestamp: 1_700_000_000_000 + i,
      })),
    })),
  }));
}

/** Every produce request of the cases below, framed as the connection writes it. */
async function encodeAll(): Promise<Buffer[]> {
  const out: Buffer[] = [];
  const { None, GZIP, Snappy } = kafkajs.CompressionTypes;
  let correlationId = 0;
  for (const produce of [produceV3, produceV7]) {
    for (const compression of [None, GZIP, Snappy]) {
      for (const seed of [1, 2, 3]) {
        const request = produce({ acks: -1, timeout: 30_000, compression, transactionalId: null, producerId: 7, producerEpoch: 0, topicData: topicData(seed) });
        const framed = await frameRequest({ correlationId: correlationId++, clientId: 'replistream-test', request });
        out.push(Buffer.from(framed.buffer));
      }
    }
  }
  return out;
}

describe("kafkajs's request encoder, patched to reference big buffers instead of copying them", () => {
  it('encodes every produce request byte for byte as kafkajs does', async () => {
    const plain = await encodeAll();
    const patch = installEncoderPatch();
    try {
      expect(patch.skipped).toBeNull();
      const patched = await encodeAll();
      expect(patched.length).toBe(plain.length);
      for (let i = 0; i < plain.length; i++) expect(patched[i].equals(plain[i]), `request ${i}`).toBe(true);
    } finally {
      patch.restore();
    }
  });

  it('keeps what an encoder referenced unchanged when the encoders go on writing', () => {
    const patch = installEncoderPatch();
    try {
      const big = bytes(REFERENCE_BYTES * 2, 9);
      const inner = new Encoder().writeInt32(1).writeBytes(big);
      const outer = new Encoder().writeInt32(2).writeEncoder(inner);
      // both go on writing after one holds the other's bytes by reference
      inner.writeInt32(3).writeBytes(bytes(REFERENCE_BYTES + 3, 10));
      outer.writeInt32(4);
      const expected = Buffer.concat([Buffer.from([0, 0, 0, 2, 0, 0, 0, 1]), Buffer.from([0, 0, 0x40, 0]), big, Buffer.from([0, 0, 0, 4])]);
      expect(outer.size()).toBe(expected.length);
      expect(outer.buffer.equals(expected)).toBe(true);
      // joined once: reading again gives the same bytes
      expect(outer.buffer.equals(expected)).toBe(true);
      expect(inner.size()).toBe(8 + big.length + 8 + REFERENCE_BYTES + 3);
    } finally {
      patch.restore();
    }
  });
});
