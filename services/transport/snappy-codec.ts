/**
 * kafkajs's snappy codec, over the native `snappy` package (napi-rs bindings of Google's C++
 * library, prebuilt binaries from npm).
 *
 * Why not kafkajs-snappy: it runs snappyjs, a JavaScript port, and in a profile of a burst of
 * 500,000 SETs compressing and decompressing record batches took 15 % of capture's CPU and 7 % of
 * the applier's. The native library does the same work several times faster.
 *
 * Kafka carries two snappy formats. What kafkajs and librdkafka producers write is one raw snappy
 * block. Java producers write the "xerial" framing of snappy-java: an 8-byte magic, two 4-byte
 * version fields, then blocks, each a 4-byte big-endian length and a raw snappy block. Reading
 * accepts both; writing produces a raw block, which every Kafka client reads.
 *
 * `copyOutputData`: without it the library hands back buffers over memory that Rust allocated and
 * V8 does not count, freed only when a garbage collection finds the buffer dead; V8, unaware, hardly
 * collects, every batch gets fresh pages, and after a few hundred batches compressing took ten
 * times longer than in JavaScript. Copying into a V8 buffer frees the Rust side at once.
 */

import snappy from 'snappy';

const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
/** Magic (8 bytes), version (4) and compatible version (4): the blocks start after them. */
const XERIAL_HEADER_BYTES = 16;
const COPY = { asBuffer: true, copyOutputData: true } as const;

function isXerial(buffer: Buffer): boolean {
  return buffer.length >= XERIAL_HEADER_BYTES && buffer.subarray(0, XERIAL_MAGIC.length).equals(XERIAL_MAGIC);
}

/** Decompresses a batch in either format (see the header). */
export function snappyDecompress(buffer: Buffer): Buffer {
  if (!isXerial(buffer)) return snappy.uncompressSync(buffer, COPY) as Buffer;
  const blocks: Buffer[] = [];
  let at = XERIAL_HEADER_BYTES;
  while (at < buffer.length) {
    if (at + 4 > buffer.length) throw new Error(`snappy (xerial framing): a block length is cut short at byte ${at} of ${buffer.length}`);
    const size = buffer.readUInt32BE(at);
    at += 4;
    if (at + size > buffer.length) throw new Error(`snappy (xerial framing): a block of ${size} bytes at byte ${at} runs past the end (${buffer.length} bytes)`);
    blocks.push(snappy.uncompressSync(buffer.subarray(at, at + size), COPY) as Buffer);
    at += size;
  }
  return blocks.length === 1 ? blocks[0] : Buffer.concat(blocks);
}

/** Compresses a batch into one raw snappy block. */
export function snappyCompress(buffer: Buffer): Buffer {
  return snappy.compressSync(buffer, { copyOutputData: true });
}

/** The codec factory kafkajs expects in `CompressionCodecs`. */
export function SnappyCodec(): {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
  decompress(buffer: Buffer): Promise<Buffer>;
  decompressSync(buffer: Buffer): Buffer;
} {
  return {
    // Read by our record-batch decoder (kafkajs-decoder.ts), which thus skips an await per batch.
    decompressSync: snappyDecompress,
    async compress(encoder) {
      return snappyCompress(encoder.buffer);
    },
    async decompress(buffer) {
      return snappyDecompress(buffer);
    },
  };
}
