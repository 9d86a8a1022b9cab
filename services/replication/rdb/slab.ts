/**
 * Buffers for what the parser hands out (keys, RESTORE payloads, string values), carved from
 * slabs of its own.
 *
 * Why: a key costs three Buffers (key, payload, value view). `Buffer.allocUnsafe` takes ~50 ns
 * and `Buffer#subarray` ~90 ns (it reads the view's buffer, offset and length through accessors
 * before constructing), against ~30 ns for constructing a typed array over a known ArrayBuffer.
 * Node's own Buffers are instances of an internal `FastBuffer extends Uint8Array` whose prototype
 * is `Buffer.prototype`; that class is not exported, so `SlabBuffer` below is the same construction:
 * a Uint8Array subclass whose prototype inherits from `Buffer.prototype` (and whose `constructor` is
 * `Buffer`, as FastBuffer's is). Its instances are Buffers for `Buffer.isBuffer`, `instanceof`,
 * every Buffer method and `util.inspect`; only `Object.getPrototypeOf(b) === Buffer.prototype`
 * tells them apart. Slabs of SLAB_BYTES (Node's pool is 8 KiB) also mean 8x fewer ArrayBuffers for
 * the garbage collector to track. As with Node's pool, a Buffer kept alive keeps its slab alive.
 */

/**
 * Made by a function as an anonymous class: tsx (which runs this code) gives named classes a
 * `name` property of their own, and a Uint8Array subclass so marked is constructed 2-3x slower
 * (V8 then calls its default constructor instead of skipping it).
 */
function anonymousSubclass(): typeof Uint8Array {
  return class extends Uint8Array {};
}
const SlabBuffer = anonymousSubclass() as unknown as new (memory: ArrayBuffer, offset: number, length: number) => Buffer;
Object.setPrototypeOf(SlabBuffer.prototype, Buffer.prototype);
Object.defineProperty(SlabBuffer.prototype, 'constructor', { value: Buffer, writable: true, configurable: true });

const SLAB_BYTES = 64 * 1024;
/** Bigger requests get a Buffer of their own (a slab would waste its tail). */
const MAX_SLAB_ALLOC = SLAB_BYTES / 8;

export class Slab {
  private memory_: ArrayBuffer = new ArrayBuffer(0);
  private capacity = 0;
  private used = 0;
  /** Offset in `memoryOf()` of the Buffer last returned by alloc(), or -1 if it is not a slab's. */
  lastOffset = -1;

  /** The current slab's memory (where the last alloc() with `lastOffset >= 0` is). */
  get memory(): ArrayBuffer {
    return this.memory_;
  }

  /** An uninitialized Buffer of `n` bytes. */
  alloc(n: number): Buffer {
    if (n > MAX_SLAB_ALLOC) {
      this.lastOffset = -1;
      return Buffer.allocUnsafe(n);
    }
    if (this.used + n > this.capacity) {
      // Uninitialized memory, like Node's pool (every byte handed out gets written).
      this.memory_ = Buffer.allocUnsafeSlow(SLAB_BYTES).buffer as ArrayBuffer;
      this.capacity = SLAB_BYTES;
      this.used = 0;
    }
    const at = this.used;
    this.used = (at + n + 7) & ~7; // 8-byte aligned, as Node's pool
    this.lastOffset = at;
    return new SlabBuffer(this.memory_, at, n);
  }

  /**
   * A view of `n` bytes at `offset` of the current slab: for a part of the Buffer alloc() just
   * returned (check `lastOffset >= 0` first).
   */
  view(offset: number, n: number): Buffer {
    return new SlabBuffer(this.memory_, offset, n);
  }
}
