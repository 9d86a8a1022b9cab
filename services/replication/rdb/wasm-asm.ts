/**
 * Just enough of the WebAssembly binary format to assemble a tiny module in memory: one memory
 * (exported as `memory`), mutable i32 globals, and exported functions whose bodies the caller
 * writes as opcode bytes. Used by crc64.ts; there is no wasm toolchain among the dependencies and
 * the module is too small to deserve one. Format reference: the WebAssembly core specification,
 * "Binary Format" chapter.
 */

export const I32 = 0x7f;
export const I64 = 0x7e;

/** The instructions the CRC kernel uses (memory instructions take `align, offset` after them). */
export const OP = {
  void: 0x40, // empty block type
  block: 0x02,
  loop: 0x03,
  br: 0x0c,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  globalGet: 0x23,
  globalSet: 0x24,
  i64Load: 0x29,
  i32Load8U: 0x2d,
  i32Const: 0x41,
  i64Const: 0x42,
  i32Eqz: 0x45,
  i32LtU: 0x49,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32And: 0x71,
  i32Xor: 0x73,
  i32Shl: 0x74,
  i32ShrU: 0x76,
  i64Or: 0x84,
  i64Xor: 0x85,
  i64Shl: 0x86,
  i64ShrU: 0x88,
  i32WrapI64: 0xa7,
  i64ExtendI32U: 0xad,
} as const;

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (constants). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(s: string): number[] {
  return vec([...Buffer.from(s, 'utf8')].map((b) => [b]));
}

/** A function body: local declarations as [count, type] runs, then the code (`end` is added). */
export function wasmFunction(locals: Array<[number, number]>, code: number[]): number[] {
  return [...vec(locals.map(([count, type]) => [...uleb(count), type])), ...code, OP.end];
}

export interface WasmFunctionDef {
  name: string;
  params: number[];
  result: number | null;
  body: number[];
}

/** A module with `pages` × 64 KiB of memory, `globalsI32` mutable i32 globals (0) and the functions. */
export function wasmModule(def: { pages: number; globalsI32: number; functions: WasmFunctionDef[] }): Uint8Array<ArrayBuffer> {
  const fns = def.functions;
  const types = fns.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.result === null ? [] : [[f.result]])]);
  const globals = Array.from({ length: def.globalsI32 }, () => [I32, 1, OP.i32Const, 0, OP.end]);
  const exports = [
    ...fns.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]),
    [...name('memory'), 0x02, 0],
  ];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, vec(types)),
    ...section(3, vec(fns.map((_, i) => uleb(i)))),
    ...section(5, vec([[0x00, ...uleb(def.pages)]])), // one memory, minimum only
    ...section(6, vec(globals)),
    ...section(7, vec(exports)),
    ...section(10, vec(fns.map((f) => [...uleb(f.body.length), ...f.body]))),
  ];
  return new Uint8Array(bytes);
}
