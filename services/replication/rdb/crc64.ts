/**
 * CRC-64/Jones as used by Redis for RDB files and DUMP payloads: polynomial 0xad93d23594c935a9,
 * reflected input and output, initial value 0, no final xor. Check value:
 * crc64("123456789") = 0xe9c6d914c4b8d9ca.
 *
 * Why WebAssembly: the checksum runs over every byte of the RDB and over every RESTORE payload,
 * and it was the parser's largest cost. JavaScript has no 64-bit integer outside BigInt (far too
 * slow here), so a table CRC in JS keeps the register as two uint32 halves and does two table
 * loads per input byte (~0.5 GB/s on the bench machine). WebAssembly has i64: the slice-by-16
 * loop below does one 64-bit table load per input byte, about 3x faster. Inputs are copied into
 * the module's memory first (a memcpy, cheap next to the CRC). Inputs shorter than WASM_MIN bytes
 * stay in JS, where a call into the module would cost more than the bytes.
 *
 * The RDB parser checksums the file from windows of its buffer copied into the module once
 * (loadWindow), and builds its RESTORE payloads there too, a batch per call: each payload's bytes
 * are copied from the window and checksummed in the module, then the batch is copied out in one go
 * (a JS→wasm call, or a typed-array view to copy through, per payload would cost as much as the
 * payload's bytes).
 *
 * No wasm toolchain is among the dependencies and the module is a few loops, so it is assembled
 * here from its instructions (wasm-asm.ts holds the binary-format encoders).
 */
import { Code, I32, I64, wasmModule } from './wasm-asm.js';

/** Bit-reversed polynomial, split in halves: reverse(0xad93d23594c935a9) = 0x95ac9329ac4bc9b5. */
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

/** Slicing depth: bytes consumed per step of the wasm loop, and the number of slice tables. */
const SLICES = 16;

// Wasm memory layout (bytes).
const SLICE_TABLES = 0; // table k, entry i at k × 2048 + i × 8 (i64)
const BATCH = SLICE_TABLES + SLICES * 2048; // payloads for `settle`, 16 bytes each
const BATCH_MAX = 2048;
const OUT = BATCH + BATCH_MAX * 16; // where `settle` writes them
const OUT_BYTES = 65536;
const SCRATCH = OUT + OUT_BYTES; // inputs are copied here
const PAGES = 5;
const SCRATCH_BYTES = PAGES * 65536 - SCRATCH;
/** Below this many bytes the JS byte loop is cheaper than a copy and a call into the module. */
const WASM_MIN = 24;

/**
 * Slice table k (k = 0…15), entry i: the register after feeding byte i and then k zero bytes into
 * a zero register. Table 0 is the classic byte-at-a-time table; the others let one step fold 16
 * input bytes at once ("slicing"). Kept as uint32 halves for the JS byte loop.
 */
const T_LO = new Uint32Array(SLICES * 256);
const T_HI = new Uint32Array(SLICES * 256);
(function buildSliceTables() {
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

// Function indexes in the module.
const F_UPDATE = 0;
const F_HI = 1;
const F_SETTLE = 2;
const F_CRC = 3;
const F_CRC2 = 4;

/**
 * The module. Exports:
 * - `update(lo, hi, ptr, len) → lo`: continues the register (lo, hi) over memory[ptr, ptr + len);
 * - `hi()`: the high half of the last register returned;
 * - `settle(lo, hi, from, to, count, v0, v1, withFile) → lo`: for each of the `count` entries at
 *   BATCH (i32 start, end, type, out), writes at OUT + out the DUMP payload
 *   [type][memory[start, end)][v0][v1][CRC-64 LE]; with `withFile`, continues the register
 *   (lo, hi) over memory[from, to), which holds the values.
 */
/** Table lookups, shared by the functions below: each works on the i32 local `w` of its code. */
class Lookups {
  constructor(
    private readonly c: Code,
    private readonly w: number,
  ) {}

  /** Pushes T[table][byte j (0…3) of w] as an i64: the byte is moved to bits 3…10 (× 8), an address. */
  lookup(j: number, table: number): void {
    const c = this.c;
    c.get(this.w);
    if (j === 0) c.i32(3).i32Shl();
    else c.i32(8 * j - 3).i32ShrU();
    c.i32(0x7f8).i32And().i64Load(SLICE_TABLES + table * 2048);
  }

  /**
   * XORs the lookups of the 8 bytes of i64 local `x` (byte j in memory order uses table
   * `first - j`) onto the i64 on the stack, or leaves them as a new i64 when `onStack` is false.
   */
  fold8(x: number, first: number, onStack: boolean): void {
    const c = this.c;
    c.get(x).i32WrapI64().set(this.w);
    for (let j = 0; j < 4; j++) {
      this.lookup(j, first - j);
      if (onStack || j > 0) c.i64Xor();
    }
    c.get(x).i64(32).i64ShrU().i32WrapI64().set(this.w);
    for (let j = 0; j < 4; j++) {
      this.lookup(j, first - 4 - j);
      c.i64Xor();
    }
  }
}

function crcModuleBytes(): Uint8Array<ArrayBuffer> {
  // crc(c: i64, p: i32, n: i32) → i64: the slice-by-16 loop, then the tail.
  const crc = new Code();
  {
    const [C, P, N, A, B, W] = [0, 1, 2, 3, 4, 5]; // A, B: i64 words of a step; W: i32 half being looked up
    const t = new Lookups(crc, W);
    // while (n >= 16) { A = c ^ load64(p); B = load64(p + 8); c = fold(A) ^ fold(B); p += 16; n -= 16 }
    crc.block().loop();
    crc.get(N).i32(SLICES).i32LtU().brIf(1);
    crc.get(C).get(P).i64Load().i64Xor().set(A);
    crc.get(P).i64Load(8).set(B);
    t.fold8(A, 15, false);
    t.fold8(B, 7, true);
    crc.set(C);
    crc.get(P).i32(SLICES).i32Add().set(P);
    crc.get(N).i32(SLICES).i32Sub().set(N);
    crc.br(0).end().end();
    // The last 0…15 bytes: one step each for 8, 4, 2 and 1 of them, as needed (a byte loop here
    // would cost up to 15 dependent steps, and the parser's checksums have many short tails).
    // if (n & 8) { A = c ^ load64(p); c = fold(A); p += 8 }
    crc.block();
    crc.get(N).i32(8).i32And().i32Eqz().brIf(0);
    crc.get(C).get(P).i64Load().i64Xor().set(A);
    t.fold8(A, 7, false);
    crc.set(C);
    crc.get(P).i32(8).i32Add().set(P);
    crc.end();
    // if (n & 4) { W = low32(c) ^ load32(p); c = (c >> 32) ^ T3[W0] ^ T2[W1] ^ T1[W2] ^ T0[W3]; p += 4 }
    crc.block();
    crc.get(N).i32(4).i32And().i32Eqz().brIf(0);
    crc.get(C).i32WrapI64().get(P).i32Load().i32Xor().set(W);
    crc.get(C).i64(32).i64ShrU();
    for (let j = 0; j < 4; j++) {
      t.lookup(j, 3 - j);
      crc.i64Xor();
    }
    crc.set(C);
    crc.get(P).i32(4).i32Add().set(P);
    crc.end();
    // if (n & 2) { W = low32(c) ^ load16(p); c = (c >> 16) ^ T1[W0] ^ T0[W1]; p += 2 }
    crc.block();
    crc.get(N).i32(2).i32And().i32Eqz().brIf(0);
    crc.get(C).i32WrapI64().get(P).i32Load16U().i32Xor().set(W);
    crc.get(C).i64(16).i64ShrU();
    t.lookup(0, 1);
    crc.i64Xor();
    t.lookup(1, 0);
    crc.i64Xor();
    crc.set(C);
    crc.get(P).i32(2).i32Add().set(P);
    crc.end();
    // if (n & 1) c = T0[(c ^ *p) & 0xff] ^ (c >> 8)
    crc.block();
    crc.get(N).i32(1).i32And().i32Eqz().brIf(0);
    crc.get(C).i64(8).i64ShrU();
    crc.get(C).i32WrapI64().get(P).i32Load8U().i32Xor().set(W);
    t.lookup(0, 0);
    crc.i64Xor().set(C);
    crc.end();
    crc.get(C);
  }

  // crc2(f: i64, g: i64, p: i32, n: i32) → f, with g in global 1: two registers over the same
  // bytes (the file's and a payload's, over a value). In each 16-byte step the second word is not
  // mixed with a register, so its 8 lookups serve both; the two chains also overlap in the CPU.
  const crc2 = new Code();
  {
    const [F, G, P, N, A, A2, B, FB, W] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const t = new Lookups(crc2, W);
    crc2.block().loop();
    crc2.get(N).i32(SLICES).i32LtU().brIf(1);
    crc2.get(P).i64Load().set(B);
    crc2.get(F).get(B).i64Xor().set(A);
    crc2.get(G).get(B).i64Xor().set(A2);
    crc2.get(P).i64Load(8).set(B);
    t.fold8(B, 7, false);
    crc2.set(FB);
    crc2.get(FB);
    t.fold8(A, 15, true);
    crc2.set(F);
    crc2.get(FB);
    t.fold8(A2, 15, true);
    crc2.set(G);
    crc2.get(P).i32(SLICES).i32Add().set(P);
    crc2.get(N).i32(SLICES).i32Sub().set(N);
    crc2.br(0).end().end();
    crc2.get(G).get(P).get(N).call(F_CRC).globalSet(1);
    crc2.get(F).get(P).get(N).call(F_CRC);
  }

  // settle(lo, hi, from, to, count, v0, v1, withFile) → lo: builds each batch payload at
  // OUT + out ([type][value][v0][v1][CRC-64 LE]); with `withFile`, continues the file register
  // (lo, hi) over [from, to) on the way (payload values lie inside it, in order).
  const settle = new Code();
  {
    const [LO, HI, FROM, TO, COUNT, V0, V1, WITH_FILE] = [0, 1, 2, 3, 4, 5, 6, 7];
    const [F, G, IT, END, O, S, N, W] = [8, 9, 10, 11, 12, 13, 14, 15]; // F, G: i64
    const t = new Lookups(settle, W);
    // One byte into register G: G = T0[(G ^ byte) & 0xff] ^ (G >> 8).
    const byteIntoG = (v: number): void => {
      settle.get(G).i64(8).i64ShrU();
      settle.get(G).i32WrapI64().get(v).i32Xor().set(W);
      t.lookup(0, 0);
      settle.i64Xor().set(G);
    };
    settle.get(LO).i64ExtendI32U().get(HI).i64ExtendI32U().i64(32).i64Shl().i64Or().set(F);
    settle.i32(BATCH).tee(IT).get(COUNT).i32(4).i32Shl().i32Add().set(END);
    settle.block().loop();
    settle.get(IT).get(END).i32LtU().i32Eqz().brIf(1);
    settle.get(IT).i32Load(0).set(S);
    settle.get(IT).i32Load(4).get(S).i32Sub().set(N);
    settle.get(IT).i32Load(12).i32(OUT).i32Add().set(O);
    settle.get(IT).i32Load(8).i32(3).i32Shl().i64Load(SLICE_TABLES).set(G); // T0[type]: after the type byte
    // with the file: F over the gap before the value, then F and G over the value together
    settle.block();
    settle.get(WITH_FILE).i32Eqz().brIf(0);
    settle.get(F).get(FROM).get(S).get(FROM).i32Sub().call(F_CRC).set(F);
    settle.get(F).get(G).get(S).get(N).call(F_CRC2).set(F);
    settle.globalGet(1).set(G);
    settle.get(S).get(N).i32Add().set(FROM);
    settle.end();
    settle.block(); // without: G alone
    settle.get(WITH_FILE).brIf(0);
    settle.get(G).get(S).get(N).call(F_CRC).set(G);
    settle.end();
    byteIntoG(V0);
    byteIntoG(V1);
    // the payload
    settle.get(O).get(IT).i32Load(8).i32Store8();
    settle.get(O).i32(1).i32Add().get(S).get(N).memoryCopy();
    settle.get(O).get(N).i32Add().get(V0).i32Store8(1);
    settle.get(O).get(N).i32Add().get(V1).i32Store8(2);
    settle.get(O).get(N).i32Add().get(G).i64Store(3);
    settle.get(IT).i32(16).i32Add().set(IT);
    settle.br(0).end().end();
    // the file after the last value
    settle.block();
    settle.get(WITH_FILE).i32Eqz().brIf(0);
    settle.get(F).get(FROM).get(TO).get(FROM).i32Sub().call(F_CRC).set(F);
    settle.end();
    settle.get(F).i64(32).i64ShrU().i32WrapI64().globalSet(0);
    settle.get(F).i32WrapI64();
  }

  const update = new Code()
    .get(0).i64ExtendI32U().get(1).i64ExtendI32U().i64(32).i64Shl().i64Or()
    .get(2).get(3).call(F_CRC).set(4)
    .get(4).i64(32).i64ShrU().i32WrapI64().globalSet(0)
    .get(4).i32WrapI64();

  const fns = [];
  fns[F_UPDATE] = { name: 'update', params: [I32, I32, I32, I32], results: [I32], locals: [[1, I64]] as Array<[number, number]>, code: update };
  fns[F_HI] = { name: 'hi', params: [], results: [I32], locals: [], code: new Code().globalGet(0) };
  fns[F_SETTLE] = { name: 'settle', params: [I32, I32, I32, I32, I32, I32, I32, I32], results: [I32], locals: [[2, I64], [6, I32]] as Array<[number, number]>, code: settle };
  fns[F_CRC] = { name: null, params: [I64, I32, I32], results: [I64], locals: [[2, I64], [1, I32]] as Array<[number, number]>, code: crc };
  fns[F_CRC2] = { name: null, params: [I64, I64, I32, I32], results: [I64], locals: [[4, I64], [1, I32]] as Array<[number, number]>, code: crc2 };
  return wasmModule({ pages: PAGES, globals: [I32, I64], functions: fns });
}

interface CrcExports {
  update(lo: number, hi: number, ptr: number, len: number): number;
  hi(): number;
  settle(lo: number, hi: number, from: number, to: number, count: number, v0: number, v1: number, withFile: number): number;
  memory: WebAssembly.Memory;
}

const wasm = new WebAssembly.Instance(new WebAssembly.Module(crcModuleBytes())).exports as unknown as CrcExports;
const wasmUpdate = wasm.update;
const wasmHi = wasm.hi;
const wasmSettle = wasm.settle;
// The module's memory never grows, so these views stay valid.
const mem = new Uint8Array(wasm.memory.buffer);
/** Wasm memory is little-endian whatever the host: words go through a DataView. */
const memView = new DataView(wasm.memory.buffer);

(function loadTables() {
  const put = (at: number, lo: number, hi: number): void => {
    memView.setUint32(at, lo, true);
    memView.setUint32(at + 4, hi, true);
  };
  for (let i = 0; i < SLICES * 256; i++) put(SLICE_TABLES + i * 8, T_LO[i], T_HI[i]);
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

  get value(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** Writes the checksum as 8 little-endian bytes (the order RDB files and DUMP payloads use). */
  writeLE(target: Uint8Array, at: number): void {
    writeLE(this.lo, this.hi, target, at);
  }

  /** True when the 8 little-endian bytes at `data[at]` equal the checksum. */
  equalsLE(data: Uint8Array, at: number): boolean {
    const lo = (data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)) >>> 0;
    const hi = (data[at + 4] | (data[at + 5] << 8) | (data[at + 6] << 16) | (data[at + 7] << 24)) >>> 0;
    return lo === this.lo && hi === this.hi;
  }

  /** See buildBatch (addresses in the module's memory). */
  settleLoaded(from: number, to: number, count: number, rdbVersion: number): void {
    this.lo = wasmSettle(this.lo, this.hi, from, to, count, rdbVersion & 0xff, (rdbVersion >> 8) & 0xff, 1) >>> 0;
    this.hi = wasmHi() >>> 0;
  }

  /** Adds the loaded `[start, end)` (see loadWindow) to the checksum. */
  updateLoaded(start: number, end: number): this {
    if (end > start) {
      this.lo = wasmUpdate(this.lo, this.hi, windowBase + start, end - start) >>> 0;
      this.hi = wasmHi() >>> 0;
    }
    return this;
  }
}

function writeLE(lo: number, hi: number, target: Uint8Array, at: number): void {
  target[at] = lo & 0xff;
  target[at + 1] = (lo >>> 8) & 0xff;
  target[at + 2] = (lo >>> 16) & 0xff;
  target[at + 3] = lo >>> 24;
  target[at + 4] = hi & 0xff;
  target[at + 5] = (hi >>> 8) & 0xff;
  target[at + 6] = (hi >>> 16) & 0xff;
  target[at + 7] = hi >>> 24;
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

// ------------------------------------------------------------------------------------------------
// Windows and batches: many checksums over one buffer (the RDB parser's file and payloads).

/** Largest region `loadWindow` takes. */
export const WINDOW_BYTES = SCRATCH_BYTES;

/** Most payloads one batch lists. */
export const BATCH_PAYLOADS = BATCH_MAX;
/** Most bytes one batch builds (the span from its first payload's start to its last one's end). */
export const BATCH_BYTES = OUT_BYTES;

let windowBase = 0;
let windowStart = 0;
let windowEnd = 0;
let batchCount = 0;

/**
 * Copies `data[start, end)` (at most WINDOW_BYTES) into the module's memory, for the functions
 * below, which take indexes into `data` inside that range. Starts an empty batch. A later
 * `Crc64#update` or `crc64WriteLE` overwrites the window.
 */
export function loadWindow(data: Uint8Array, start: number, end: number): void {
  mem.set(data.subarray(start, end), SCRATCH);
  windowBase = SCRATCH - start;
  windowStart = start;
  windowEnd = end;
  batchCount = 0;
}

/** Empties the batch (the window stays loaded). */
export function clearBatch(): void {
  batchCount = 0;
}

/**
 * Lists a DUMP payload for the next buildBatch(): type byte `type`, value the loaded
 * `[start, end)`, written at `out` in the batch's output (out + end − start + 11 ≤ BATCH_BYTES).
 */
export function batchPayload(type: number, start: number, end: number, out: number): void {
  if (start < windowStart || end > windowEnd || batchCount >= BATCH_MAX || out + end - start + 11 > OUT_BYTES) {
    throw new Error('crc64 batch: payload outside the window or the output, or too many');
  }
  const at = BATCH + batchCount * 16;
  memView.setInt32(at, windowBase + start, true);
  memView.setInt32(at + 4, windowBase + end, true);
  memView.setInt32(at + 8, type, true);
  memView.setInt32(at + 12, out, true);
  batchCount++;
}

/**
 * Builds the listed payloads (RDB version `rdbVersion` in their trailers) and returns the batch's
 * output, `span` bytes: each payload is at its `out`. Valid until the next call into this module.
 * With `file`, also continues it over the loaded `[from, to)`, which must hold the listed values
 * (the file CRC and the payloads' then share their reads of the values).
 */
export function buildBatch(rdbVersion: number, span: number, file: Crc64 | null = null, from = 0, to = 0): Uint8Array {
  if (file !== null) file.settleLoaded(windowBase + from, windowBase + to, batchCount, rdbVersion);
  else if (batchCount > 0) wasmSettle(0, 0, 0, 0, batchCount, rdbVersion & 0xff, (rdbVersion >> 8) & 0xff, 0);
  return new Uint8Array(wasm.memory.buffer, OUT, span);
}
