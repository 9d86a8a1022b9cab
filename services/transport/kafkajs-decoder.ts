/**
 * A cheaper reader of the record batches in a fetch response: kafkajs's fetch v11 response
 * decoder, replaced on the module kafkajs reads it from, with its own record-set reader swapped
 * for `recordBatchDecoder` below.
 *
 * Why: capture writes each event as soon as it is ready (a 5 ms linger), so at a few hundred
 * writes per second spread over a database's partitions most record batches hold one record of a
 * few hundred bytes. kafkajs decodes every batch with general-purpose tools: each 64-bit field
 * through its `Long` class and a string conversion, each record's offset and timestamp by parsing
 * those strings back into `Long`s, a copy of the batch's context per batch, and two awaits per
 * batch. Measured on 3,000 one-record snappy batches of 257 bytes: 11.7–12.3 µs per record with
 * kafkajs's reader, 3.6–3.9 µs with this one (20-record batches: 2.6–3.4 against 1.0–1.6 µs).
 * Here the same fields are read straight off the buffer, with plain numbers while they are exact
 * (offsets and timestamps below 2^53, which is every real one), and compressed batches are
 * decompressed without an await when the codec offers a synchronous `decompressSync` (ours does,
 * snappy-codec.ts).
 *
 * The result is the same, object for object: the unit test decodes fetch responses and batches of
 * every shape (both codecs, several records, headers, null keys, transactional and control
 * batches, offsets past 2^53, a cut tail) with kafkajs's functions and with these and compares
 * them. Message sets of the older formats (magic 0 and 1) still go to kafkajs's own reader.
 *
 * Why the v11 response and not the record-set reader itself: kafkajs's response modules bind that
 * reader when they load, and in the services' bundle (esbuild) its modules live in closures, not
 * in Node's module cache, so only a property of a module's exports can be replaced. kafkajs asks
 * brokers for fetch v11 (the newest it knows, which every broker since Kafka 2.3 answers); with an
 * older broker its own decoders run, unchanged.
 *
 * kafkajs is pinned to an exact version in package.json; the patch checks the shape of what it
 * replaces and leaves it alone (with the reason) when that changes.
 */
import KafkaDecoder from 'kafkajs/src/protocol/decoder.js';
import compression from 'kafkajs/src/protocol/message/compression/index.js';
import fetchV11Response from 'kafkajs/src/protocol/requests/fetch/v11/response.js';
import kafkajsDecodeMessages from 'kafkajs/src/protocol/requests/fetch/v4/decodeMessages.js';

/** Where the magic byte sits in a batch: after the first offset (8), length (4) and leader epoch (4). */
const MAGIC_OFFSET = 16;
const RECORD_BATCH_MAGIC = 2;
/** The smallest batch (header up to its record count), as kafkajs's loop requires before reading one. */
const RECORD_BATCH_OVERHEAD = 49;
const TIMESTAMP_TYPE_FLAG_MASK = 0x8;
const TRANSACTIONAL_FLAG_MASK = 0x10;
const CONTROL_FLAG_MASK = 0x20;
const COMPRESSION_CODEC_MASK = 0x7;
/** kafkajs's `TimestampTypes`. */
const CREATE_TIME = 0;
const LOG_APPEND_TIME = 1;
const TWO_32 = 4294967296;

/** kafkajs's fetch decoder: the parts of its `Decoder` this module uses. */
export interface FetchDecoder {
  buffer: Buffer;
  offset: number;
  readInt32(): number;
  canReadBytes(n: number): boolean;
  readBytes(n: number): Buffer;
}

interface Codec {
  decompress(buffer: Buffer): Promise<Buffer>;
  decompressSync?(buffer: Buffer): Buffer;
}

type CodecFactory = () => Codec;

/** What kafkajs hands its consumer for each record (its record decoder's result). */
export interface DecodedKafkaRecord {
  magicByte: number;
  attributes: number;
  timestamp: string;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer | null | (Buffer | null)[]>;
  isControlRecord: boolean;
  batchContext: BatchContext;
}

interface BatchContext {
  firstOffset: string;
  firstTimestamp: string;
  partitionLeaderEpoch: number;
  inTransaction: boolean;
  isControlBatch: boolean;
  lastOffsetDelta: number;
  producerId: string;
  producerEpoch: number;
  firstSequence: number;
  maxTimestamp: string;
  timestampType: number;
  magicByte: number;
}

export type DecodeMessages = (decoder: FetchDecoder) => Promise<unknown[]>;

/** A signed 64-bit big-endian integer as a plain number when exact, or null. */
function int64Number(b: Buffer, at: number): number | null {
  const hi = b.readInt32BE(at);
  if (hi < -0x200000 || hi >= 0x200000) return null;
  return hi * TWO_32 + b.readUInt32BE(at + 4);
}

function int64String(b: Buffer, at: number): string {
  const n = int64Number(b, at);
  return n === null ? b.readBigInt64BE(at).toString() : String(n);
}

/** Reads Kafka's varints (zigzag); `pos` is the cursor, shared by the readers below. */
class RecordReader {
  pos = 0;
  constructor(readonly b: Buffer) {}

  /** A zigzag varint of at most 32 bits, exactly as kafkajs reads it. */
  varInt(): number {
    const b = this.b;
    let result = 0;
    let shift = 0;
    let byte: number;
    do {
      if (this.pos >= b.length) throw new RangeError(`a record's varint runs past the end of its batch (${b.length} bytes)`);
      byte = b[this.pos++];
      result += (byte & 0x7f) << shift;
      shift += 7;
    } while (byte >= 0x80);
    return (result >>> 1) ^ -(result & 1);
  }

  /** A zigzag varlong: a number when exact, a bigint otherwise. */
  varLong(): number | bigint {
    const b = this.b;
    const start = this.pos;
    let result = 0;
    let scale = 1;
    let byte: number;
    do {
      if (this.pos >= b.length) throw new RangeError(`a record's varlong runs past the end of its batch (${b.length} bytes)`);
      if (this.pos - start >= 10) throw new RangeError('a record holds a varlong of more than 10 bytes');
      byte = b[this.pos++];
      result += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte >= 0x80);
    if (result <= Number.MAX_SAFE_INTEGER) return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
    // Past 2^53 (never a real delta): again, exactly.
    let big = 0n;
    for (let i = start, s = 0n; i < this.pos; i++, s += 7n) big |= BigInt(b[i] & 0x7f) << s;
    big = BigInt.asUintN(64, big);
    return (big >> 1n) ^ -(big & 1n);
  }

  /** Bytes with a varint length (-1: null), as a view of the batch. */
  bytes(): Buffer | null {
    const n = this.varInt();
    if (n === -1) return null;
    const start = this.pos;
    this.pos += n;
    if (n < 0 || this.pos > this.b.length) throw new RangeError(`a record's field of ${n} bytes runs past the end of its batch (${this.b.length} bytes)`);
    return this.b.subarray(start, this.pos);
  }
}

function addString(base: number | null, baseString: string, delta: number | bigint): string {
  if (base !== null && typeof delta === 'number') {
    const sum = base + delta;
    if (Number.isSafeInteger(sum)) return String(sum);
  }
  return (BigInt(baseString) + BigInt(delta)).toString();
}

function readHeaders(r: RecordReader): DecodedKafkaRecord['headers'] {
  const headers: DecodedKafkaRecord['headers'] = {};
  const count = r.varInt();
  for (let i = 0; i < count; i++) {
    const keyBytes = r.bytes();
    const key = String(keyBytes === null ? null : keyBytes.toString('utf8'));
    const value = r.bytes();
    const seen = headers[key];
    if (seen === undefined) headers[key] = value;
    else if (Array.isArray(seen)) headers[key] = seen.concat([value]);
    else headers[key] = [seen, value];
  }
  return headers;
}

/** Builds the replacement of `decodeMessages`; `original` handles the older message-set formats. */
export function recordBatchDecoder(original: DecodeMessages, codecs: Record<number, CodecFactory | undefined>): DecodeMessages {
  return async function decodeMessages(decoder: FetchDecoder): Promise<unknown[]> {
    const at0 = decoder.offset;
    const whole = decoder.buffer;
    // Peek at the magic byte; anything but a v2 record batch goes to kafkajs as it came.
    if (at0 + 4 + MAGIC_OFFSET < whole.length && whole.readInt32BE(at0) > MAGIC_OFFSET && whole[at0 + 4 + MAGIC_OFFSET] !== RECORD_BATCH_MAGIC) {
      return original(decoder);
    }
    const size = decoder.readInt32();
    if (size <= 0 || !decoder.canReadBytes(size)) return [];
    const buf = decoder.readBytes(size);
    const records: DecodedKafkaRecord[] = [];
    const codecsSeen: (Codec | null)[] = [];
    let at = 0;
    while (buf.length - at >= RECORD_BATCH_OVERHEAD) {
      const length = buf.readInt32BE(at + 8);
      const start = at + 12;
      const end = start + length;
      // The tail of a fetch can end inside a batch (maxBytes): not an error, the next fetch has it.
      if (end > buf.length) break;
      const firstOffsetNumber = int64Number(buf, at);
      const firstOffset = firstOffsetNumber === null ? buf.readBigInt64BE(at).toString() : String(firstOffsetNumber);
      const partitionLeaderEpoch = buf.readInt32BE(start);
      const magicByte = buf.readInt8(start + 4);
      // CRC at start + 5: kafkajs does not check it either.
      const attributes = buf.readInt16BE(start + 9);
      const lastOffsetDelta = buf.readInt32BE(start + 11);
      const firstTimestampNumber = int64Number(buf, start + 15);
      const firstTimestamp = firstTimestampNumber === null ? buf.readBigInt64BE(start + 15).toString() : String(firstTimestampNumber);
      const maxTimestamp = int64String(buf, start + 23);
      const producerId = int64String(buf, start + 31);
      const producerEpoch = buf.readInt16BE(start + 39);
      const firstSequence = buf.readInt32BE(start + 41);
      const isControlBatch = (attributes & CONTROL_FLAG_MASK) > 0;
      const timestampType = (attributes & TIMESTAMP_TYPE_FLAG_MASK) > 0 ? LOG_APPEND_TIME : CREATE_TIME;
      const batchContext: BatchContext = {
        firstOffset,
        firstTimestamp,
        partitionLeaderEpoch,
        inTransaction: (attributes & TRANSACTIONAL_FLAG_MASK) > 0,
        isControlBatch,
        lastOffsetDelta,
        producerId,
        producerEpoch,
        firstSequence,
        maxTimestamp,
        timestampType,
        magicByte,
      };
      const count = buf.readInt32BE(start + 45);
      const codecId = attributes & COMPRESSION_CODEC_MASK;
      let codec = codecsSeen[codecId];
      if (codec === undefined) {
        const factory = codecs[codecId];
        codec = codecsSeen[codecId] = factory ? factory() : null;
      }
      let r: RecordReader;
      if (codec === null) {
        r = new RecordReader(buf.subarray(0, end));
        r.pos = start + 49;
      } else if (count <= 0) {
        at = end;
        continue;
      } else {
        const compressed = buf.subarray(start + 49, end);
        r = new RecordReader(codec.decompressSync ? codec.decompressSync(compressed) : await codec.decompress(compressed));
      }
      for (let i = 0; i < count; i++) {
        const recordLength = r.varInt();
        const recordEnd = r.pos + recordLength;
        const recordAttributes = r.b.readInt8(r.pos++);
        const timestampDelta = r.varLong();
        const timestamp =
          timestampType === LOG_APPEND_TIME && maxTimestamp ? maxTimestamp : addString(firstTimestampNumber, firstTimestamp, timestampDelta);
        const offset = addString(firstOffsetNumber, firstOffset, r.varInt());
        const key = r.bytes();
        const value = r.bytes();
        const headers = readHeaders(r);
        if (r.pos !== recordEnd) throw new RangeError(`record at offset ${offset} is ${recordLength} bytes long, but its fields end at ${r.pos - (recordEnd - recordLength)}`);
        records.push({ magicByte, attributes: recordAttributes, timestamp, offset, key, value, headers, isControlRecord: isControlBatch, batchContext });
      }
      at = end;
    }
    return records;
  };
}

/** kafkajs's fetch decoder (its `Decoder`): what the response's outer fields are read with. */
interface ResponseDecoder extends FetchDecoder {
  readInt16(): number;
  readInt64(): { toString(): string };
  readString(): string;
  readArray<T>(reader: (d: ResponseDecoder) => T): T[];
  readArrayAsync<T>(reader: (d: ResponseDecoder) => Promise<T>): Promise<T[]>;
}

/**
 * kafkajs's fetch v11 response decoder, field for field, with `decodeMessages` as the reader of
 * each partition's record set.
 */
export function fetchV11Decoder(decodeMessages: DecodeMessages): (rawData: Buffer) => Promise<unknown> {
  const decodeAbortedTransaction = (d: ResponseDecoder) => ({ producerId: d.readInt64().toString(), firstOffset: d.readInt64().toString() });
  const decodePartition = async (d: ResponseDecoder) => ({
    partition: d.readInt32(),
    errorCode: d.readInt16(),
    highWatermark: d.readInt64().toString(),
    lastStableOffset: d.readInt64().toString(),
    lastStartOffset: d.readInt64().toString(),
    abortedTransactions: d.readArray(decodeAbortedTransaction),
    preferredReadReplica: d.readInt32(),
    messages: await decodeMessages(d),
  });
  const decodeTopic = async (d: ResponseDecoder) => ({ topicName: d.readString(), partitions: await d.readArrayAsync(decodePartition) });
  return async function decode(rawData: Buffer) {
    const d = new (KafkaDecoder as unknown as new (b: Buffer) => ResponseDecoder)(rawData);
    const clientSideThrottleTime = d.readInt32();
    const errorCode = d.readInt16();
    const sessionId = d.readInt32();
    const responses = await d.readArrayAsync(decodeTopic);
    // As kafkajs: the broker did not throttle this request; a client-side throttle is reported apart.
    return { throttleTime: 0, clientSideThrottleTime, errorCode, sessionId, responses };
  };
}

export interface DecoderPatch {
  /** Why it was not installed, or null. */
  skipped: string | null;
  /** Puts kafkajs's own decoder back. */
  restore: () => void;
}

/** kafkajs's own decoder is kept on the module it was taken from, so it can be put back (or compared with, in tests). */
const v11 = fetchV11Response as unknown as { decode?: unknown; parse?: unknown; __kafkajsDecode?: unknown };

/** kafkajs's own fetch v11 response decoder, patched or not. */
export function kafkajsFetchV11Decode(): (rawData: Buffer) => Promise<unknown> {
  return (v11.__kafkajsDecode ?? v11.decode) as (rawData: Buffer) => Promise<unknown>;
}

/** Installs the replacement (idempotent); returns why it was not installed, or null, and how to undo it. */
export function installDecoderPatch(): DecoderPatch {
  const restore = () => {
    if (v11.__kafkajsDecode === undefined) return;
    v11.decode = v11.__kafkajsDecode;
    delete v11.__kafkajsDecode;
  };
  if (v11.__kafkajsDecode !== undefined) return { skipped: null, restore };
  const original = v11.decode;
  const codecs = (compression as unknown as { Codecs?: Record<number, CodecFactory | undefined> }).Codecs;
  if (typeof original !== 'function' || typeof v11.parse !== 'function' || typeof kafkajsDecodeMessages !== 'function' || typeof codecs !== 'object' || typeof KafkaDecoder !== 'function') {
    return { skipped: "kafkajs's fetch v11 response, its record-set reader or its codec table has changed", restore: () => {} };
  }
  Object.defineProperty(v11, '__kafkajsDecode', { configurable: true, enumerable: false, writable: true, value: original });
  v11.decode = fetchV11Decoder(recordBatchDecoder(kafkajsDecodeMessages as unknown as DecodeMessages, codecs));
  return { skipped: null, restore };
}
