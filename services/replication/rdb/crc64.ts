/**
 * CRC-64/Jones as used by Redis for RDB files and DUMP payloads: polynomial 0xad93d23594c935a9,
 * reflected input and output, initial value 0, no final xor. Check value:
 * crc64("123456789") = 0xe9c6d914c4b8d9ca.
 *
 * Why WebAssembly: the checksum runs over every byte of the RDB and again over every RESTORE
 * payload, and it was the parser's largest cost. JavaScript has no 64-bit integer outside BigInt
 * (far too slow here), so a table CRC in JS keeps the register as two uint32 halves and does two
 * table loads per input byte (~0.5 GB/s on the bench machine). WebAssembly has i64: the
 * slice-by-16 loop below does one 64-bit table load per input byte, about 3x faster. Inputs are
 * copied into the module's memory first (a memcpy, cheap next to the CRC). Inputs shorter than
 * WASM_MIN bytes stay in JS, where a call into the module would cost more than the bytes.
 *
 * No wasm toolchain is among the dependencies and the module is a single loop, so it is
 * assembled here from its instructions (wasm-asm.ts holds the binary-format encoders).
 */
import { I32, I64, OP, wasmModule, wasmFunction, uleb, sleb } from './wasm-asm.js';

/** Bit-reversed polynomial, split in halves: reverse(0xad93d23594c935a9) = 0x95ac9329ac4bc9b5. */
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

/** Slicing depth: bytes consumed per step of the wasm loop, and the number of tables. */
const SLICES = 16;
const TABLE_BYTES = SLICES * 256 * 8;
/** Wasm memory: the tables, then a scratch area that inputs are copied into. */
const PAGES = 2;
const SCRATCH = TABLE_BYTES;
const SCRATCH_BYTES = PAGES * 65536 - SCRATCH;
/** Below this many bytes the JS byte loop is cheaper than a copy and a call into the module. */
const WASM_MIN = 24;

/**
 * Table k (k = 0…15), entry i: the register after feeding byte i and then k zero bytes into a
 * zero register. Table 0 is the classic byte-at-a-time table; the others let one step fold 16
 * input bytes at once ("slicing"). Kept as uint32 halves for the JS byte loop.
 */
const T_LO = new Uint32Array(SLICES * 256);
const T_HI = new Uint32Array(SLICES * 256);
(function buildTables() {
  for (let i = 0; i < 256; i++) {
    let lo = i;
    let hi = 0;
    for (let k = 0; k < 8; k++) {
      const odd = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (odd) {
        lo = (lo ^ POLY_LO) >>> 0;
        hi = (hi ^ POLY_HI) >>> 0;
      }
    }
    T_LO[i] = lo;
    T_HI[i] = hi;
  }
  for (let t = 1; t < SLICES; t++) {
    for (let i = 0; i < 256; i++) {
      const plo = T_LO[(t - 1) * 256 + i];
      const phi = T_HI[(t - 1) * 256 + i];
      const idx = plo & 0xff;
      T_LO[t * 256 + i] = (((plo >>> 8) | (phi << 24)) ^ T_LO[idx]) >>> 0;
      T_HI[t * 256 + i] = ((phi >>> 8) ^ T_HI[idx]) >>> 0;
    }
  }
})();

/**
 * The module: `update(lo, hi, ptr, len) → lo` continues the register (lo, hi) over
 * memory[ptr, ptr + len) and returns its low half; `hi()` returns the high half of the last result.
 * Table k lives at byte k × 2048; a lookup is `i64.load offset=k×2048 (byte × 8)`.
 */
function crcModuleBytes(): Uint8Array<ArrayBuffer> {
  // Locals after the 4 i32 params (lo 0, hi 1, ptr 2, len 3).
  const CRC = 4; // i64 register
  const A = 5; // i64: register ^ first 8 input bytes of the step
  const B = 6; // i64: next 8 input bytes
  const W = 7; // i32: one half of A or B, bytes being looked up
  const b: number[] = [];
  const get = (l: number): void => void b.push(OP.localGet, l);
  const set = (l: number): void => void b.push(OP.localSet, l);

  // T[table][byte j of W (0…3)], pushed as an i64. The index byte is moved to bits 3…10 (×8).
  const lookup = (j: number, table: number): void => {
    get(W);
    const shift = 8 * j - 3;
    if (shift < 0) b.push(OP.i32Const, ...sleb(3), OP.i32Shl);
    else b.push(OP.i32Const, ...sleb(shift), OP.i32ShrU);
    b.push(OP.i32Const, ...sleb(0x7f8), OP.i32And);
    b.push(OP.i64Load, 3, ...uleb(table * 2048));
  };
  // XORs onto the stack the lookups of the 8 bytes of i64 local `x`; byte j (in memory order)
  // uses table `first - j`. Leaves one i64.
  const fold8 = (x: number, first: number, onStack: boolean): void => {
    get(x);
    b.push(OP.i32WrapI64);
    set(W);
    for (let j = 0; j < 4; j++) {
      lookup(j, first - j);
      if (onStack || j > 0) b.push(OP.i64Xor);
    }
    get(x);
    b.push(OP.i64Const, ...sleb(32), OP.i64ShrU, OP.i32WrapI64);
    set(W);
    for (let j = 0; j < 4; j++) {
      lookup(j, first - 4 - j);
      b.push(OP.i64Xor);
    }
  };

  // crc = lo | hi << 32
  get(0);
  b.push(OP.i64ExtendI32U);
  get(1);
  b.push(OP.i64ExtendI32U, OP.i64Const, ...sleb(32), OP.i64Shl, OP.i64Or);
  set(CRC);
  // while (len >= 16) { A = crc ^ load64(ptr); B = load64(ptr + 8); crc = fold(A) ^ fold(B); … }
  b.push(OP.block, OP.void, OP.loop, OP.void);
  get(3);
  b.push(OP.i32Const, ...sleb(SLICES), OP.i32LtU, OP.brIf, 1);
  get(CRC);
  get(2);
  b.push(OP.i64Load, 0, 0, OP.i64Xor);
  set(A);
  get(2);
  b.push(OP.i64Load, 0, 8);
  set(B);
  fold8(A, 15, false);
  fold8(B, 7, true);
  set(CRC);
  get(2);
  b.push(OP.i32Const, ...sleb(SLICES), OP.i32Add);
  set(2);
  get(3);
  b.push(OP.i32Const, ...sleb(SLICES), OP.i32Sub);
  set(3);
  b.push(OP.br, 0, OP.end, OP.end);
  // while (len > 0) { crc = T0[(crc ^ *ptr) & 0xff] ^ (crc >> 8); ptr++; len--; }
  b.push(OP.block, OP.void, OP.loop, OP.void);
  get(3);
  b.push(OP.i32Eqz, OP.brIf, 1);
  get(CRC);
  b.push(OP.i64Const, ...sleb(8), OP.i64ShrU);
  get(CRC);
  b.push(OP.i32WrapI64);
  get(2);
  b.push(OP.i32Load8U, 0, 0, OP.i32Xor, OP.i32Const, ...sleb(0xff), OP.i32And, OP.i32Const, ...sleb(3), OP.i32Shl);
  b.push(OP.i64Load, 3, 0, OP.i64Xor);
  set(CRC);
  get(2);
  b.push(OP.i32Const, ...sleb(1), OP.i32Add);
  set(2);
  get(3);
  b.push(OP.i32Const, ...sleb(1), OP.i32Sub);
  set(3);
  b.push(OP.br, 0, OP.end, OP.end);
  // global 0 = high half; return the low half
  get(CRC);
  b.push(OP.i64Const, ...sleb(32), OP.i64ShrU, OP.i32WrapI64, OP.globalSet, 0);
  get(CRC);
  b.push(OP.i32WrapI64);

  return wasmModule({
    pages: PAGES,
    globalsI32: 1,
    functions: [
      { name: 'update', params: [I32, I32, I32, I32], result: I32, body: wasmFunction([[3, I64], [1, I32]], b) },
      { name: 'hi', params: [], result: I32, body: wasmFunction([], [OP.globalGet, 0]) },
    ],
  });
}

interface CrcExports {
  update(lo: number, hi: number, ptr: number, len: number): number;
  hi(): number;
  memory: WebAssembly.Memory;
}

const wasm = new WebAssembly.Instance(new WebAssembly.Module(crcModuleBytes())).exports as unknown as CrcExports;
const wasmUpdate = wasm.update;
const wasmHi = wasm.hi;
/** The module's memory never grows, so this view stays valid. */
const mem = new Uint8Array(wasm.memory.buffer);
(function loadTables() {
  const dv = new DataView(wasm.memory.buffer);
  for (let i = 0; i < SLICES * 256; i++) {
    dv.setUint32(i * 8, T_LO[i], true);
    dv.setUint32(i * 8 + 4, T_HI[i], true);
  }
})();

/** Incremental CRC-64/Jones. `update` as many times as needed, then read `value`. */
export class Crc64 {
  private lo = 0;
  private hi = 0;

  constructor(initial?: bigint) {
    if (initial !== undefined && initial !== 0n) {
      this.lo = Number(initial & 0xffffffffn) >>> 0;
      this.hi = Number((initial >> 32n) & 0xffffffffn) >>> 0;
    }
  }

  reset(): void {
    this.lo = 0;
    this.hi = 0;
  }

  /** Adds `data[start, end)` to the checksum. */
  update(data: Uint8Array, start = 0, end = data.length): this {
    let lo = this.lo;
    let hi = this.hi;
    let p = start;
    if (end - p >= WASM_MIN) {
      // An input that is (nearly) all of `data` is copied without building a view of the part:
      // a view costs more than the copy for small inputs such as DUMP payloads (CRC'd up to
      // their 8-byte trailer).
      if (p === 0 && data.length <= SCRATCH_BYTES && data.length - end <= 64) {
        mem.set(data, SCRATCH);
        lo = wasmUpdate(lo, hi, SCRATCH, end);
        hi = wasmHi();
        p = end;
      } else {
        while (end - p >= WASM_MIN) {
          const n = Math.min(end - p, SCRATCH_BYTES);
          mem.set(data.subarray(p, p + n), SCRATCH);
          lo = wasmUpdate(lo, hi, SCRATCH, n);
          hi = wasmHi();
          p += n;
        }
      }
    }
    while (p < end) {
      const idx = (lo ^ data[p++]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ T_LO[idx];
      hi = (hi >>> 8) ^ T_HI[idx];
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
    return this;
  }

  /** Adds the loaded `[start, end)` (see loadWindow) to the checksum. */
  updateLoaded(start: number, end: number): this {
    if (end > start) {
      this.lo = wasmUpdate(this.lo, this.hi, windowBase + start, end - start) >>> 0;
      this.hi = wasmHi() >>> 0;
    }
    return this;
  }

  get value(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** Writes the checksum as 8 little-endian bytes (the order RDB files and DUMP payloads use). */
  writeLE(target: Uint8Array, at: number): void {
    const lo = this.lo;
    const hi = this.hi;
    target[at] = lo & 0xff;
    target[at + 1] = (lo >>> 8) & 0xff;
    target[at + 2] = (lo >>> 16) & 0xff;
    target[at + 3] = lo >>> 24;
    target[at + 4] = hi & 0xff;
    target[at + 5] = (hi >>> 8) & 0xff;
    target[at + 6] = (hi >>> 16) & 0xff;
    target[at + 7] = hi >>> 24;
  }

  /** True when the 8 little-endian bytes at `data[at]` equal the checksum. */
  equalsLE(data: Uint8Array, at: number): boolean {
    const lo = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
    const hi = (data[at + 4] | (data[at + 5] << 8) | (data[at + 6] << 16) | (data[at + 7] << 24)) >>> 0;
    return lo === this.lo && hi === this.hi;
  }
}

/**
 * Largest region `loadWindow` takes. A caller that checksums many pieces of one buffer (the
 * parser: the file and every payload's value bytes) copies the buffer into the module once, a
 * window at a time, instead of once per piece.
 */
export const WINDOW_BYTES = SCRATCH_BYTES;
let windowBase = 0;

/**
 * Copies `data[start, end)` (at most WINDOW_BYTES) into the module's memory, for
 * `Crc64#updateLoaded` and `dumpTrailerLoaded`, which take indexes into `data` inside that range.
 * A later `Crc64#update` or `crc64WriteLE` overwrites it.
 */
export function loadWindow(data: Uint8Array, start: number, end: number): void {
  mem.set(data.subarray(start, end), SCRATCH);
  windowBase = SCRATCH - start;
}

/**
 * Writes at `target[at]` the 10-byte DUMP payload trailer for a value whose serialized bytes are
 * the loaded `[start, end)`: the RDB version (u16 LE), then the CRC-64 (u64 LE) of the type byte,
 * the value and the version.
 */
export function dumpTrailerLoaded(type: number, start: number, end: number, rdbVersion: number, target: Uint8Array, at: number): void {
  // The register after the type byte alone is table entry `type`.
  let lo = wasmUpdate(T_LO[type], T_HI[type], windowBase + start, end - start);
  let hi = wasmHi();
  const v0 = rdbVersion & 0xff;
  const v1 = (rdbVersion >> 8) & 0xff;
  let idx = (lo ^ v0) & 0xff;
  lo = ((lo >>> 8) | (hi << 24)) ^ T_LO[idx];
  hi = (hi >>> 8) ^ T_HI[idx];
  idx = (lo ^ v1) & 0xff;
  lo = ((lo >>> 8) | (hi << 24)) ^ T_LO[idx];
  hi = (hi >>> 8) ^ T_HI[idx];
  target[at] = v0;
  target[at + 1] = v1;
  target[at + 2] = lo & 0xff;
  target[at + 3] = (lo >>> 8) & 0xff;
  target[at + 4] = (lo >>> 16) & 0xff;
  target[at + 5] = lo >>> 24;
  target[at + 6] = hi & 0xff;
  target[at + 7] = (hi >>> 8) & 0xff;
  target[at + 8] = (hi >>> 16) & 0xff;
  target[at + 9] = hi >>> 24;
}

/** One-shot CRC-64/Jones of `data[start, end)`. */
export function crc64(data: Uint8Array, start = 0, end = data.length): bigint {
  return new Crc64().update(data, start, end).value;
}

const scratch = new Crc64();

/**
 * CRC-64/Jones of `data[start, end)` written as 8 little-endian bytes at `target[at]`, without
 * allocating (for DUMP payload trailers).
 */
export function crc64WriteLE(data: Uint8Array, start: number, end: number, target: Uint8Array, at: number): void {
  scratch.reset();
  scratch.update(data, start, end);
  scratch.writeLE(target, at);
}
