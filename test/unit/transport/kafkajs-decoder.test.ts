import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { fetchV11Decoder, installDecoderPatch, kafkajsFetchV11Decode, recordBatchDecoder, type DecodeMessages, type FetchDecoder } from '../../../services/transport/kafkajs-decoder.js';
import { SnappyCodec } from '../../../services/transport/snappy-codec.js';

const require = createRequire(import.meta.url);
type Encoded = { buffer: Buffer };
type Long = { toString(): string };
const LongClass = require('kafkajs/src/utils/long') as { fromValue(v: number | string): Long; fromString(s: string): Long };
const Decoder = require('kafkajs/src/protocol/decoder') as new (b: Buffer) => FetchDecoder;
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0') as { RecordBatch: (o: object) => Promise<Encoded> };
const Record = require('kafkajs/src/protocol/recordBatch/record/v0') as (o: object) => Encoded;
const compression = require('kafkajs/src/protocol/message/compression') as { Codecs: Record<number, unknown>; Types: Record<string, number> };
compression.Codecs[compression.Types.Snappy] = SnappyCodec;
const kafkajsDecodeMessages = require('kafkajs/src/protocol/requests/fetch/v4/decodeMessages') as DecodeMessages;
const ours = recordBatchDecoder(kafkajsDecodeMessages, compression.Codecs as never);
const fetchV11 = require('kafkajs/src/protocol/requests/fetch/v11/response') as { decode: (b: Buffer) => Promise<unknown> };

/** Byte offset of the attributes (int16) in a batch: first offset 8, length 4, epoch 4, magic 1, CRC 4. */
const ATTRIBUTES_AT = 21;

function value(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

interface BatchSpec {
  compression: 'none' | 'snappy' | 'gzip';
  firstOffset: string;
  firstTimestamp?: number;
  records: { key?: Buffer | null; value: Buffer | null; headers?: Record<string, string | Buffer | (string | Buffer)[]>; timestampDelta?: number }[];
  transactional?: boolean;
  /** Attribute bits set after encoding (kafkajs's encoder cannot write them). */
  extraAttributes?: number;
}

async function batchBytes(spec: BatchSpec): Promise<Buffer> {
  const records = spec.records.map((r, i) => Record({ offsetDelta: i, timestampDelta: r.timestampDelta ?? i * 3, key: r.key ?? null, value: r.value, headers: r.headers ?? {} }));
  const encoded = await RecordBatch({
    compression: compression.Types[spec.compression === 'none' ? 'None' : spec.compression === 'snappy' ? 'Snappy' : 'GZIP'],
    firstOffset: LongClass.fromString(spec.firstOffset),
    firstTimestamp: spec.firstTimestamp ?? 1_764_000_000_123,
    maxTimestamp: (spec.firstTimestamp ?? 1_764_000_000_123) + 99,
    lastOffsetDelta: records.length - 1,
    transactional: spec.transactional ?? false,
    producerId: LongClass.fromValue(spec.transactional ? 4242 : -1),
    records,
  });
  const b = Buffer.from(encoded.buffer);
  if (spec.extraAttributes) b.writeInt16BE(b.readInt16BE(ATTRIBUTES_AT) | spec.extraAttributes, ATTRIBUTES_AT);
  return b;
}

/** A fetch response's record set: its int32 size, then the batches (optionally cut short). */
function recordSet(batches: Buffer[], cut = 0): Buffer {
  const all = Buffer.concat(batches);
  const body = all.subarray(0, all.length - cut);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length);
  // Trailing bytes after the record set (the next partition's fields) must stay unread.
  return Buffer.concat([size, body, Buffer.from([0xde, 0xad])]);
}

async function both(set: Buffer): Promise<{ expected: unknown[]; actual: unknown[] }> {
  const d1 = new Decoder(set);
  const d2 = new Decoder(set);
  const expected = await kafkajsDecodeMessages(d1);
  const actual = await ours(d2);
  expect(d2.offset).toBe(d1.offset);
  return { expected, actual };
}

const SHAPES: BatchSpec[] = [
  { compression: 'snappy', firstOffset: '0', records: [{ value: value(257, 1) }] },
  { compression: 'none', firstOffset: '1', records: [{ key: Buffer.from('k'), value: value(10, 2) }, { value: null }, { value: value(0, 3) }] },
  {
    compression: 'snappy',
    firstOffset: '4',
    records: Array.from({ length: 40 }, (_, i) => ({ value: value(100 + i * 37, i), headers: i % 3 === 0 ? { h: 'v', dup: ['a', 'b', 'c'], bin: value(5, i) } : undefined })),
  },
  { compression: 'gzip', firstOffset: '44', records: [{ value: value(3000, 9) }, { value: value(1, 10), timestampDelta: -5 }] },
  // Offsets and timestamps past 2^53: exact, as kafkajs's Long arithmetic makes them.
  { compression: 'none', firstOffset: '9007199254740990', firstTimestamp: 2 ** 53 - 1, records: [{ value: value(8, 1) }, { value: value(8, 2) }, { value: value(8, 3) }, { value: value(8, 4) }] },
  { compression: 'snappy', firstOffset: '1000', transactional: true, records: [{ value: value(30, 5) }, { value: value(30, 6) }] },
  // A control batch (a transaction marker) and one stamped with the broker's log-append time.
  { compression: 'none', firstOffset: '1002', transactional: true, extraAttributes: 0x20, records: [{ key: Buffer.from([0, 0, 0, 1]), value: Buffer.from([0, 0, 0, 0, 0, 0]) }] },
  { compression: 'snappy', firstOffset: '1003', extraAttributes: 0x08, records: [{ value: value(12, 7) }, { value: value(12, 8) }] },
];

describe('kafkajs record-batch decoder (replacement of decodeMessages)', () => {
  it('decodes every shape of batch exactly as kafkajs does', async () => {
    for (const spec of SHAPES) {
      const { expected, actual } = await both(recordSet([await batchBytes(spec)]));
      expect(actual.length).toBe(spec.records.length);
      expect(actual).toEqual(expected);
    }
  });

  it('decodes a record set of many batches, and stops at a batch the fetch cut short', async () => {
    const batches = await Promise.all(SHAPES.map(batchBytes));
    const whole = await both(recordSet(batches));
    expect(whole.actual.length).toBe(SHAPES.reduce((n, s) => n + s.records.length, 0));
    expect(whole.actual).toEqual(whole.expected);
    const last = batches[batches.length - 1].length;
    for (const cut of [1, 10, last - 49, last - 1, last, last + 1]) {
      const { expected, actual } = await both(recordSet(batches, cut));
      expect(actual).toEqual(expected);
    }
  });

  it('reads the fields a consumer uses: offsets and timestamps as strings, views of key and value, headers', async () => {
    const set = recordSet([await batchBytes({ compression: 'snappy', firstOffset: '77', firstTimestamp: 1_000, records: [{ key: Buffer.from('a'), value: Buffer.from('one'), headers: { x: ['1', '2'] } }, { value: Buffer.from('two'), timestampDelta: 20 }] })]);
    const records = (await ours(new Decoder(set))) as { offset: string; timestamp: string; key: Buffer | null; value: Buffer; headers: Record<string, unknown>; batchContext: { lastOffsetDelta: number } }[];
    expect(records.map((r) => [r.offset, r.timestamp, r.key?.toString() ?? null, r.value.toString()])).toEqual([
      ['77', '1000', 'a', 'one'],
      ['78', '1020', null, 'two'],
    ]);
    expect(records[0].headers).toEqual({ x: [Buffer.from('1'), Buffer.from('2')] });
    expect(records[1].batchContext.lastOffsetDelta).toBe(1);
  });

  it('returns nothing for an empty or incomplete record set, and hands older message sets to kafkajs', async () => {
    for (const set of [Buffer.from([0, 0, 0, 0]), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0, 0, 1, 0, 1, 2])]) {
      const { expected, actual } = await both(set);
      expect(actual).toEqual([]);
      expect(expected).toEqual([]);
    }
    // A magic-1 message set: kafkajs's own decoder runs (marked by a stand-in here).
    const legacy = await batchBytes(SHAPES[1]);
    legacy[16] = 1;
    const seen: unknown[] = [];
    const withStandIn = recordBatchDecoder(async (d) => (seen.push(d.offset), ['legacy']), compression.Codecs as never);
    expect(await withStandIn(new Decoder(recordSet([legacy])))).toEqual(['legacy']);
    expect(seen).toEqual([0]);
  });

  it('refuses a record whose fields do not end where its length says', async () => {
    const b = await batchBytes({ compression: 'none', firstOffset: '0', records: [{ value: value(20, 1) }] });
    // The record's length varint sits right after the 4-byte record count (batch byte 61).
    b[61] = b[61] + 2;
    await expect(ours(new Decoder(recordSet([b])))).rejects.toThrow(/record at offset 0 is/);
  });

  it('decodes a whole fetch v11 response as kafkajs does: topics, partitions, aborted transactions, errors', async () => {
    const batches = await Promise.all(SHAPES.map(batchBytes));
    const int = (bytes: number, v: number | bigint) => {
      const b = Buffer.alloc(bytes);
      if (bytes === 2) b.writeInt16BE(Number(v));
      else if (bytes === 4) b.writeInt32BE(Number(v));
      else b.writeBigInt64BE(BigInt(v));
      return b;
    };
    const str = (t: string) => Buffer.concat([int(2, Buffer.byteLength(t)), Buffer.from(t)]);
    const partition = (p: number, set: Buffer, aborted: [bigint, bigint][]) =>
      Buffer.concat([int(4, p), int(2, p === 3 ? 1 : 0), int(8, 5000 + p), int(8, 4990 + p), int(8, 0), int(4, aborted.length), ...aborted.flatMap(([id, off]) => [int(8, id), int(8, off)]), int(4, -1), set]);
    const raw = Buffer.concat([
      int(4, 7), int(2, 0), int(4, 99), int(4, 2),
      str('t.s1.db0'), int(4, 3),
      partition(0, recordSet(batches.slice(0, 3)).subarray(0, -2), []),
      partition(1, recordSet(batches.slice(5, 7)).subarray(0, -2), [[4242n, 1000n]]),
      partition(3, int(4, 0), []),
      str('t.s1.db1'), int(4, 1),
      partition(2, recordSet(batches, 30).subarray(0, -2), [[-1n, 2n ** 60n]]),
    ]);
    const expected = await kafkajsFetchV11Decode()(raw);
    expect(await fetchV11Decoder(ours)(raw)).toEqual(expected);
    expect(JSON.stringify(expected)).toContain('t.s1.db1');
  });

  it('installs into kafkajs (its fetch v11 response decoder), and restores', async () => {
    const original = kafkajsFetchV11Decode();
    const patch = installDecoderPatch();
    try {
      expect(patch.skipped).toBeNull();
      expect(fetchV11.decode).not.toBe(original);
      expect(installDecoderPatch().skipped).toBeNull(); // idempotent
      expect(kafkajsFetchV11Decode()).toBe(original);
    } finally {
      patch.restore();
    }
    expect(fetchV11.decode).toBe(original);
  });
});
