/**
 * Fewer copies in kafkajs's request encoder (its `Encoder` class, patched in place).
 *
 * Why: kafkajs builds a produce request by nesting encoders (record → records → compressed
 * batch → batch → partition → topic → request → size-prefixed frame), and each level copies the
 * whole of the level below into a new buffer it grows by doubling, zero-filled (`Buffer.alloc`).
 * A record batch of capture's is copied about ten times on its way to the socket. In a CPU
 * profile of capture during a 1M-key full sync, those copies (`Buffer#copy` under kafkajs's
 * `writeBufferInternal`, `ensureAvailable` and `writeEncoder`) took more time than anything of
 * capture's own. A microbenchmark of produce requests (four records, snappy, with the services'
 * `MALLOC_MMAP_THRESHOLD_`, so every buffer past 128 KB is fresh pages): 6–12 ms per MB of
 * records with 100 KB records, much of it in the kernel, against under 1 ms for snappy itself;
 * 3.5–3.9 ms with this patch (900 KB records: 14–16 ms, 9–10 with it).
 *
 * What changes, and only inside the encoder (the bytes on the wire are the same; the unit test
 * encodes requests both ways and compares them):
 * - a buffer of at least `REFERENCE_BYTES` written into an encoder, or an encoder written into
 *   another, is kept by reference in a list of chunks instead of being copied;
 * - `buffer` (read where kafkajs needs contiguous bytes: compression, the batch CRC, the socket
 *   write) joins the chunks once;
 * - growing uses `Buffer.allocUnsafe`: only written bytes are ever read (`buffer` stops at the
 *   offset), so zero-filling them first was wasted.
 * Chunks are only ever referenced, never written: an encoder writes after its offset only, so
 * the bytes another encoder holds by reference do not change.
 *
 * kafkajs is pinned to an exact version in package.json; the patch checks the shape of the class
 * it replaces and leaves it alone (with the reason) when that changes.
 */
import KafkaEncoder from 'kafkajs/src/protocol/encoder.js';

/** From this size a written buffer is referenced rather than copied. */
export const REFERENCE_BYTES = 8192;

interface EncoderState {
  buf: Buffer;
  offset: number;
  /** Bytes before `buf`, in order (absent until something is referenced). */
  chunks?: Buffer[];
  chunkBytes?: number;
}

type EncoderPrototype = Record<string, unknown> & ThisType<EncoderState>;

const REPLACED = ['ensureAvailable', 'writeBufferInternal', 'writeEncoder', 'writeEncoderArray', 'size'] as const;

/** Moves what `e` has written into its chunk list; `e` goes on writing in the rest of its buffer. */
function seal(e: EncoderState): Buffer[] {
  const chunks = (e.chunks ??= []);
  if (e.offset > 0) {
    chunks.push(e.buf.subarray(0, e.offset));
    e.chunkBytes = (e.chunkBytes ?? 0) + e.offset;
    e.buf = e.buf.subarray(e.offset);
    e.offset = 0;
  }
  return chunks;
}

function isEncoder(value: unknown): value is EncoderState {
  return value != null && Buffer.isBuffer((value as EncoderState).buf);
}

const patched = {
  ensureAvailable(this: EncoderState, length: number): void {
    if (this.offset + length <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(kafkajsNextPowerOfTwo(this.offset + length));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
  },
  writeBufferInternal(this: EncoderState & { ensureAvailable(n: number): void }, buffer: Buffer): void {
    const n = buffer.length;
    if (n >= REFERENCE_BYTES) {
      seal(this).push(buffer);
      this.chunkBytes = (this.chunkBytes ?? 0) + n;
      return;
    }
    this.ensureAvailable(n);
    buffer.copy(this.buf, this.offset, 0);
    this.offset += n;
  },
  writeEncoder(this: EncoderState & { writeBufferInternal(b: Buffer): void }, value: EncoderState): unknown {
    if (!isEncoder(value)) throw new Error('value should be an instance of Encoder');
    if (!value.chunks) {
      this.writeBufferInternal(value.buf.subarray(0, value.offset));
      return this;
    }
    const chunks = seal(this);
    for (const c of value.chunks) chunks.push(c);
    let added = value.chunkBytes ?? 0;
    if (value.offset > 0) {
      chunks.push(value.buf.subarray(0, value.offset));
      added += value.offset;
    }
    this.chunkBytes = (this.chunkBytes ?? 0) + added;
    return this;
  },
  writeEncoderArray(this: EncoderState & { writeEncoder(e: EncoderState): void }, values: EncoderState[]): unknown {
    if (!Array.isArray(values) || values.some((v) => !isEncoder(v))) throw new Error('all values should be an instance of Encoder[]');
    for (const v of values) this.writeEncoder(v);
    return this;
  },
  size(this: EncoderState): number {
    return (this.chunkBytes ?? 0) + this.offset;
  },
};

function joined(this: EncoderState): Buffer {
  if (this.chunks) {
    if (this.offset > 0) this.chunks.push(this.buf.subarray(0, this.offset));
    const all = Buffer.concat(this.chunks);
    this.chunks = undefined;
    this.chunkBytes = 0;
    this.buf = all;
    this.offset = all.length;
  }
  return this.buf.subarray(0, this.offset);
}

/** kafkajs's own growth rule (a static of its Encoder), so buffers grow as they did. */
function kafkajsNextPowerOfTwo(value: number): number {
  return (KafkaEncoder as unknown as { nextPowerOfTwo(n: number): number }).nextPowerOfTwo(value);
}

/**
 * Installs the patch (idempotent). Returns why it was not installed, or null; and a function
 * that restores kafkajs's own methods (for the test that compares both encodings).
 */
export function installEncoderPatch(): { skipped: string | null; restore: () => void } {
  const proto = (KafkaEncoder as unknown as { prototype: EncoderPrototype }).prototype;
  if (proto.__replistreamPatched) return { skipped: null, restore: () => {} };
  const missing: string[] = REPLACED.filter((m) => typeof proto[m] !== 'function');
  if (typeof (KafkaEncoder as unknown as { nextPowerOfTwo?: unknown }).nextPowerOfTwo !== 'function') missing.push('nextPowerOfTwo');
  const bufferGetter = Object.getOwnPropertyDescriptor(proto, 'buffer');
  if (missing.length > 0 || !bufferGetter?.get) {
    return { skipped: `kafkajs's Encoder has changed (missing: ${[...missing, ...(bufferGetter?.get ? [] : ['buffer'])].join(', ')})`, restore: () => {} };
  }
  const originals = Object.fromEntries(REPLACED.map((m) => [m, proto[m]]));
  Object.assign(proto, patched);
  Object.defineProperty(proto, 'buffer', { configurable: true, get: joined });
  Object.defineProperty(proto, '__replistreamPatched', { configurable: true, value: true });
  return {
    skipped: null,
    restore: () => {
      Object.assign(proto, originals);
      Object.defineProperty(proto, 'buffer', bufferGetter);
      delete proto.__replistreamPatched;
    },
  };
}
