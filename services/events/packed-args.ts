/**
 * A command's arguments held in one buffer instead of one Buffer object each.
 *
 * Why: a Buffer costs about 108 bytes of V8 heap whatever its length, so the 2,000,002 arguments of
 * a 1,000,000-field HSET (22 MB on the wire) took 216 MB of heap as Buffers: an applier rebuilding
 * it from its record pieces went from 105 to 435 MB of RSS. Packed, the same arguments are their
 * bytes plus 8 bytes each (start and length).
 *
 * `PackedArgs.view()` is a read-only `Buffer[]` over them (a Proxy): reading an element makes a
 * Buffer view of its bytes on the spot, which dies young, so code written for `Buffer[]` (command
 * names, keys, sizes) reads it as it is. Writing to it throws. The RESP encoder
 * (destination/resp-codec.ts) recognises it (`packedArgsOf`) and writes the bytes without making
 * any view. Only commands of very many arguments are packed (`PACK_ARGS_FROM`).
 */
import { constants as bufferConstants } from 'node:buffer';
import { ReplistreamError } from '../common/errors.js';

/** Commands of at least this many arguments are worth packing. */
export const PACK_ARGS_FROM = 65_536;

const MAX_LENGTH = bufferConstants.MAX_LENGTH;
const EMPTY = Buffer.alloc(0);
const PACKED = Symbol('packed arguments');

export interface ResizableArrayBuffer extends ArrayBuffer {
  resize(byteLength: number): void;
}
type ResizableArrayBufferConstructor = new (byteLength: number, options: { maxByteLength: number }) => ResizableArrayBuffer;

/** Whether this runtime has resizable ArrayBuffers (Node ≥ 20). */
export function resizableArrayBuffers(): boolean {
  if (resizable === undefined) {
    try {
      const ab = newResizable(16);
      ab.resize(8);
      resizable = ab.byteLength === 8;
    } catch {
      resizable = false;
    }
  }
  return resizable;
}
let resizable: boolean | undefined;

/** A resizable ArrayBuffer of length 0 that may grow to `max` bytes in place. */
export function newResizable(max = MAX_LENGTH): ResizableArrayBuffer {
  return new (ArrayBuffer as unknown as ResizableArrayBufferConstructor)(0, { maxByteLength: max });
}

/**
 * Grows `ab` to hold at least `end` bytes, by a quarter or 64 KiB at least: a resize is a system
 * call (memory protection of the new pages), and one per small argument of a million took 0.7 s.
 * Room not written to yet costs address space, not memory. The first step stays small because
 * giving back unused room (`view`) costs by the page too: with a 1 MiB first step, packing a
 * command of a few short arguments and shrinking it took 0.7 ms, with 64 KiB 0.08 ms.
 */
export function growTo(ab: ResizableArrayBuffer, end: number): void {
  const size = ab.byteLength;
  ab.resize(Math.min(MAX_LENGTH, Math.max(end, size + (size >> 2), size + GROW_STEP)));
}
const GROW_STEP = 64 * 1024;

/** Arguments appended one by one (and the last one extended), packed. */
export class PackedArgs {
  /** The arguments' bytes, back to back, in one buffer that grows in place. */
  private readonly ab = newResizable();
  /** A length-tracking view of `ab`: one object for every copy, not one per argument. */
  private readonly all = new Uint8Array(this.ab);
  private used = 0;
  /**
   * Where each argument starts in `ab` (they lie back to back, so the next start is its end), in
   * a resizable buffer too: growing it copies nothing.
   */
  private readonly startsAb = newResizable(MAX_LENGTH);
  private readonly starts = new Float64Array(this.startsAb);
  count = 0;

  /** Bytes of all the arguments. */
  get bytes(): number {
    return this.used;
  }

  push(arg: Buffer): void {
    if ((this.count + 2) * 8 > this.startsAb.byteLength) growTo(this.startsAb, (this.count + 2) * 8);
    this.starts[this.count] = this.used;
    this.count++;
    this.extendLast(arg);
  }

  /** Appends arguments `from..` of packed `s`, copied from its storage (no view made of each). */
  appendRange(s: PackedStorage, from: number): void {
    for (let i = from; i < s.count; i++) {
      this.push(EMPTY);
      this.extendLastFrom(s.data, packedStart(s, i), packedEnd(s, i));
    }
  }

  /** Appends `more` to the last argument's bytes. */
  extendLast(more: Buffer): void {
    this.extendLastFrom(more, 0, more.length);
  }

  /** Appends `src[start, end)` to the last argument's bytes (no view of it made). */
  extendLastFrom(src: Buffer, start: number, end: number): void {
    if (this.count === 0) throw new ReplistreamError('INTERNAL', 'PackedArgs.extendLast: no argument');
    const n = end - start;
    if (n <= 0) return;
    const to = this.used + n;
    if (to > MAX_LENGTH) throw new ReplistreamError('PROTOCOL', `a command's arguments add up to more than ${MAX_LENGTH} bytes`);
    if (to > this.ab.byteLength) growTo(this.ab, to);
    src.copy(this.all, this.used, start, end);
    this.used = to;
  }

  /** The arguments as a read-only `Buffer[]` (see the header); nothing may be appended after. */
  view(): Buffer[] {
    // the room left for more is let go
    this.ab.resize(this.used);
    this.startsAb.resize((this.count + 1) * 8);
    this.starts[this.count] = this.used;
    const data = Buffer.from(this.ab, 0, this.used);
    const starts = new Float64Array(this.startsAb, 0, this.count + 1);
    return packedView({ data, starts, count: this.count, head: starts[0] ?? 0, tail: this.used });
  }
}

/**
 * Arguments `[from, to)` of packed `s`, the first starting at byte `head` of the data and the last
 * ending at byte `tail` (both inside them: a slice of an argument, as slicing.ts cuts them), as a
 * read-only view that shares `s`'s storage.
 */
export function packedRange(s: PackedStorage, from: number, to: number, head: number, tail: number): Buffer[] {
  return packedView({ data: s.data, starts: s.starts.subarray(from, to + 1), count: to - from, head, tail });
}

/** Where argument `i` of `s` starts in `s.data`. */
export function packedStart(s: PackedStorage, i: number): number {
  return i === 0 ? s.head : s.starts[i];
}

/** Where argument `i` of `s` ends in `s.data`. */
export function packedEnd(s: PackedStorage, i: number): number {
  return i === s.count - 1 ? s.tail : s.starts[i + 1];
}

/** What a packed argument list is made of. */
export interface PackedStorage {
  data: Buffer;
  /**
   * Argument i is `data[starts[i], starts[i + 1])` (count + 1 entries), except that the first
   * starts at `head` and the last ends at `tail` (`packedStart`, `packedEnd`).
   */
  starts: Float64Array;
  count: number;
  head: number;
  tail: number;
}

/** The storage behind `args` when it is a view of packed arguments, else null. */
export function packedArgsOf(args: readonly unknown[]): PackedStorage | null {
  return (args as unknown as { [PACKED]?: PackedStorage })[PACKED] ?? null;
}

function readOnly(): never {
  throw new ReplistreamError('INTERNAL', 'packed command arguments are read-only');
}

function packedView(s: PackedStorage): Buffer[] {
  const arg = (i: number) => s.data.subarray(packedStart(s, i), packedEnd(s, i));
  const index = (p: string | symbol): number => {
    if (typeof p !== 'string' || p.length === 0 || p.length > 10) return -1;
    const c = p.charCodeAt(0);
    if (c < 48 || c > 57 || (c === 48 && p.length > 1)) return -1;
    const i = Number(p);
    return Number.isInteger(i) ? i : -1;
  };
  return new Proxy([] as Buffer[], {
    get(target, p, receiver) {
      if (p === PACKED) return s;
      if (p === 'length') return s.count;
      const i = index(p);
      if (i >= 0) return i < s.count ? arg(i) : undefined;
      return Reflect.get(target, p, receiver);
    },
    has(target, p) {
      if (p === PACKED) return true;
      const i = index(p);
      if (i >= 0) return i < s.count;
      return Reflect.has(target, p);
    },
    getOwnPropertyDescriptor(target, p) {
      if (p === 'length') return { value: s.count, writable: true, enumerable: false, configurable: false };
      const i = index(p);
      if (i >= 0) return i < s.count ? { value: arg(i), writable: false, enumerable: true, configurable: true } : undefined;
      return Reflect.getOwnPropertyDescriptor(target, p);
    },
    ownKeys() {
      const keys: string[] = [];
      for (let i = 0; i < s.count; i++) keys.push(String(i));
      keys.push('length');
      return keys;
    },
    set: readOnly,
    deleteProperty: readOnly,
    defineProperty: readOnly,
  });
}
