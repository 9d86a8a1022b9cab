/**
 * Just enough of the WebAssembly binary format to assemble a tiny module in memory: one memory
 * (exported as `memory`), mutable globals, functions written with the `Code` builder (exported
 * by name, or internal). Used by crc64.ts; there is no wasm toolchain among the dependencies and
 * the module is too small to deserve one. Format reference: the WebAssembly core specification,
 * "Binary Format" chapter.
 */

export const I32 = 0x7f;
export const I64 = 0x7e;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
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
function sleb(n: number): number[] {
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

/**
 * A function body, instruction by instruction (stack machine: operands are pushed before the
 * instruction that takes them). Memory accesses take their static `offset` immediate.
 */
export class Code {
  readonly bytes: number[] = [];

  private op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }

  get(local: number): this {
    return this.op(0x20, ...uleb(local));
  }
  set(local: number): this {
    return this.op(0x21, ...uleb(local));
  }
  tee(local: number): this {
    return this.op(0x22, ...uleb(local));
  }
  globalGet(g: number): this {
    return this.op(0x23, ...uleb(g));
  }
  globalSet(g: number): this {
    return this.op(0x24, ...uleb(g));
  }
  i32(v: number): this {
    return this.op(0x41, ...sleb(v));
  }
  i64(v: number): this {
    return this.op(0x42, ...sleb(v));
  }
  /** block … end; `br 0` inside leaves it. */
  block(): this {
    return this.op(0x02, 0x40);
  }
  /** loop … end; `br 0` inside jumps back to its start. */
  loop(): this {
    return this.op(0x03, 0x40);
  }
  end(): this {
    return this.op(0x0b);
  }
  br(depth: number): this {
    return this.op(0x0c, ...uleb(depth));
  }
  brIf(depth: number): this {
    return this.op(0x0d, ...uleb(depth));
  }
  call(fn: number): this {
    return this.op(0x10, ...uleb(fn));
  }
  i32Load(offset = 0): this {
    return this.op(0x28, 2, ...uleb(offset));
  }
  i64Load(offset = 0): this {
    return this.op(0x29, 3, ...uleb(offset));
  }
  i32Load8U(offset = 0): this {
    return this.op(0x2d, 0, ...uleb(offset));
  }
  i32Load16U(offset = 0): this {
    return this.op(0x2f, 1, ...uleb(offset));
  }
  i64Store(offset = 0): this {
    return this.op(0x37, 3, ...uleb(offset));
  }
  i32Store8(offset = 0): this {
    return this.op(0x3a, 0, ...uleb(offset));
  }
  /** memory.copy (bulk memory): [dst, src, n] → copies n bytes, overlap allowed. */
  memoryCopy(): this {
    return this.op(0xfc, 0x0a, 0x00, 0x00);
  }
  i32Eqz(): this {
    return this.op(0x45);
  }
  i32LtU(): this {
    return this.op(0x49);
  }
  i32Add(): this {
    return this.op(0x6a);
  }
  i32Sub(): this {
    return this.op(0x6b);
  }
  i32And(): this {
    return this.op(0x71);
  }
  i32Xor(): this {
    return this.op(0x73);
  }
  i32Shl(): this {
    return this.op(0x74);
  }
  i32ShrU(): this {
    return this.op(0x76);
  }
  i64Eqz(): this {
    return this.op(0x50);
  }
  i64And(): this {
    return this.op(0x83);
  }
  i64Or(): this {
    return this.op(0x84);
  }
  i64Xor(): this {
    return this.op(0x85);
  }
  i64Shl(): this {
    return this.op(0x86);
  }
  i64ShrU(): this {
    return this.op(0x88);
  }
  i32WrapI64(): this {
    return this.op(0xa7);
  }
  i64ExtendI32U(): this {
    return this.op(0xad);
  }
}

export interface WasmFunction {
  /** Exported under this name; null: internal (called by index). */
  name: string | null;
  params: number[];
  results: number[];
  /** Local variables after the parameters, as [count, type] runs. */
  locals: Array<[number, number]>;
  code: Code;
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

/**
 * A module with `pages` × 64 KiB of memory, mutable globals of the given types (initially 0) and
 * the functions, whose indexes are their positions in `functions`.
 */
export function wasmModule(def: { pages: number; globals: number[]; functions: WasmFunction[] }): Uint8Array<ArrayBuffer> {
  const fns = def.functions;
  const types = fns.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))]);
  const globals = def.globals.map((t) => [t, 1, t === I32 ? 0x41 : 0x42, 0, 0x0b]); // mutable, const 0
  const exports = [
    ...fns.flatMap((f, i) => (f.name === null ? [] : [[...name(f.name), 0x00, ...uleb(i)]])),
    [...name('memory'), 0x02, 0],
  ];
  const bodies = fns.map((f) => {
    const body = [...vec(f.locals.map(([count, type]) => [...uleb(count), type])), ...f.code.bytes, 0x0b];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, vec(types)),
    ...section(3, vec(fns.map((_, i) => uleb(i)))),
    ...section(5, vec([[0x00, ...uleb(def.pages)]])), // one memory, minimum only
    ...section(6, vec(globals)),
    ...section(7, vec(exports)),
    ...section(10, vec(bodies)),
  ]);
}
