import { ReplistreamError } from '../../common/errors.js';
import { PackedArgs } from '../../events/packed-args.js';

const EMPTY = Buffer.alloc(0);

/**
 * Streaming parser for the command stream a master sends to its replicas.
 *
 * The stream holds RESP arrays of bulk strings (`*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n`) and, rarely,
 * inline commands (a line of space-separated words ending in `\n`, e.g. an inline `PING` or a
 * bare `\n`). The parser is pure: no I/O, no timers. It cuts the bytes into commands and says,
 * for each one, where it starts in the replication stream and how many bytes it spans, so a
 * replica can count its offset exactly. It keeps no other state (SELECT, MULTI… are the
 * grouper's business).
 *
 * Offsets: `offset` is the replication offset *before* the command's first byte (Redis's
 * `master_repl_offset` counts bytes, so the first byte after `+FULLRESYNC <id> 1000` has offset
 * 1000 and the command ending there moves the replica to `offset + size`).
 *
 * Memory: returned arguments are copies; one that spans pushes is copied into a buffer of its
 * length as its bytes come, so no pushed chunk is kept. With `views`, an argument that lies within one chunk is a view of it instead of a copy (for a
 * caller whose chunks are never reused, such as a socket's `data` events): copying every argument
 * of a burst of small SETs was a fifth of the parser's time and most of its garbage.
 *
 * Errors: malformed input throws `ReplistreamError('PROTOCOL')`; the parser is unusable after
 * that (every later `push` throws the same error) — drop it and reconnect.
 */
export interface RespCommand {
  /** The command's arguments, name first. Empty for an empty inline line or `*0` / `*-1`. */
  args: Buffer[];
  /** Stream offset of the command's first byte. */
  offset: number;
  /** Number of bytes the command occupies in the stream. */
  size: number;
}

export interface RespParserOptions {
  /** Offset of the first byte that will be pushed (default 0). */
  offset?: number;
  /** Longest accepted header or inline line, without its line end (default 64 KiB, as Redis). */
  maxLineLength?: number;
  /** Largest accepted bulk string length (default 4 GiB - 1). */
  maxBulkLength?: number;
  /** Largest accepted argument count of one command (default 2^31 - 1). */
  maxArgs?: number;
  /**
   * Return arguments held whole in one pushed chunk as views of that chunk, not copies (default
   * false). Only for chunks that are never modified or reused: a view keeps its chunk alive.
   */
  views?: boolean;
  /**
   * A command of at least this many arguments has them packed (events/packed-args.ts: their bytes
   * copied into one buffer, read through a read-only `Buffer[]` view) instead of one Buffer each
   * (default 0: never). A Buffer costs ~108 bytes of heap: the 2,000,002 arguments of a
   * 1,000,000-field HSET took 216 MB as Buffers, 38 MB packed.
   */
  packArgsFrom?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const STAR = 0x2a;
const DOLLAR = 0x24;

const enum State {
  /** Waiting for the first line of a command (`*n` or an inline line). */
  Start,
  /** Inside an array: waiting for the `$len` line of the next argument. */
  BulkHeader,
  /** Inside a bulk string: reading its bytes. */
  BulkData,
  /** After a bulk string's bytes: expecting `\r`. */
  BulkCr,
  /** After a bulk string's bytes and `\r`: expecting `\n`. */
  BulkLf,
}

export class RespParser {
  private readonly maxLine: number;
  private readonly maxBulk: number;
  private readonly maxArgs: number;
  private readonly views: boolean;
  private readonly packFrom: number;
  /** The arguments of the command being read, when it is packed. */
  private packed: PackedArgs | null = null;

  private state: State = State.Start;
  /** Offset of the next byte to be consumed. */
  private pos: number;
  /** Offset of the first byte of the command being parsed. */
  private cmdStart: number;
  /** Partial line carried across chunks (header or inline). */
  private lineParts: Buffer[] = [];
  private lineLength = 0;
  private args: Buffer[] = [];
  private argsLeft = 0;
  private bulkLeft = 0;
  /** Length of the bulk string being read. */
  private bulkLength = 0;
  /** The bulk string being read when it spans chunks (allocated at its first bytes). */
  private bulk: Buffer | null = null;
  private failure: ReplistreamError | null = null;

  constructor(opts: RespParserOptions = {}) {
    this.pos = opts.offset ?? 0;
    this.cmdStart = this.pos;
    this.maxLine = opts.maxLineLength ?? 64 * 1024;
    this.maxBulk = opts.maxBulkLength ?? 0xffff_ffff;
    this.maxArgs = opts.maxArgs ?? 0x7fff_ffff;
    this.views = opts.views ?? false;
    this.packFrom = opts.packArgsFrom ?? 0;
  }

  /** Offset of the next byte the parser expects (all pushed bytes are consumed). */
  get offset(): number {
    return this.pos;
  }

  /** Offset where the command currently being parsed begins (== `offset` between commands). */
  get commandStart(): number {
    return this.state === State.Start && this.lineLength === 0 ? this.pos : this.cmdStart;
  }

  /** True when no partial command is held (every pushed byte belongs to a returned command). */
  get idle(): boolean {
    return this.state === State.Start && this.lineLength === 0;
  }

  /** Forgets any partial command and restarts at `offset` (e.g. after a reconnect). */
  reset(offset: number): void {
    this.state = State.Start;
    this.pos = offset;
    this.cmdStart = offset;
    this.lineParts = [];
    this.lineLength = 0;
    this.args = [];
    this.argsLeft = 0;
    this.bulkLeft = 0;
    this.bulkLength = 0;
    this.bulk = null;
    this.packed = null;
    this.failure = null;
  }

  /** Consumes `chunk` and returns every command completed by it, in stream order. */
  push(chunk: Buffer): RespCommand[] {
    if (this.failure) throw this.failure;
    const out: RespCommand[] = [];
    try {
      this.consume(chunk, out);
    } catch (err) {
      this.failure =
        err instanceof ReplistreamError
          ? err
          : new ReplistreamError('PROTOCOL', 'replication stream parser failed', { cause: err });
      throw this.failure;
    }
    return out;
  }

  private consume(chunk: Buffer, out: RespCommand[]): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Start:
        case State.BulkHeader: {
          // Fast path: a whole, well-formed `*<n>\r\n` / `$<n>\r\n` header inside this chunk
          // (anything else — split or malformed — takes the general path below).
          if (this.lineLength === 0) {
            const c = chunk[i];
            const expected = this.state === State.Start ? STAR : DOLLAR;
            if (c === expected) {
              const next = this.fastInteger(chunk, i + 1, n);
              if (next > 0) {
                const value = this.fastValue;
                if (this.state === State.Start) {
                  this.cmdStart = this.pos;
                  this.pos += next - i;
                  i = next;
                  this.arrayHeader(value, out);
                } else {
                  this.pos += next - i;
                  i = next;
                  this.bulkHeader(value);
                  // Fast path: the whole bulk string and its CRLF are in this chunk.
                  const len = this.bulkLeft;
                  if ((this.state as State) === State.BulkData && i + len + 2 <= n) {
                    if (chunk[i + len] !== CR || chunk[i + len + 1] !== LF) {
                      this.pos += len;
                      throw this.protocol('bulk string not followed by CRLF');
                    }
                    let arg: Buffer | null = null;
                    if (this.packed) this.packed.extendLastFrom(chunk, i, i + len);
                    else if (this.views) arg = chunk.subarray(i, i + len);
                    else {
                      arg = Buffer.allocUnsafe(len);
                      chunk.copy(arg, 0, i, i + len);
                    }
                    i += len + 2;
                    this.pos += len + 2;
                    this.bulkLeft = 0;
                    this.bulkDone(arg, out);
                  }
                }
                break;
              }
            }
          }

          const nl = chunk.indexOf(LF, i);
          if (nl < 0) {
            this.appendLine(chunk.subarray(i));
            this.pos += n - i;
            i = n;
            break;
          }
          if (this.state === State.Start && this.lineLength === 0) this.cmdStart = this.pos;
          const line = this.takeLine(chunk.subarray(i, nl));
          this.pos += nl + 1 - i;
          i = nl + 1;
          if (this.state === State.Start) this.startLine(line, out);
          else this.bulkHeaderLine(line);
          break;
        }
        case State.BulkData: {
          const take = Math.min(this.bulkLeft, n - i);
          // An argument over several chunks is copied into a buffer of its length (known from its
          // header) as its bytes come: the chunks are not kept, and the argument is never held
          // twice (chunks, then their concatenation: 200 MB for a 100 MB SET).
          if (this.packed) this.packed.extendLastFrom(chunk, i, i + take);
          else {
            this.bulk ??= Buffer.allocUnsafe(this.bulkLength);
            chunk.copy(this.bulk, this.bulkLength - this.bulkLeft, i, i + take);
          }
          this.bulkLeft -= take;
          this.pos += take;
          i += take;
          if (this.bulkLeft === 0) this.state = State.BulkCr;
          break;
        }
        case State.BulkCr: {
          if (chunk[i] !== CR) throw this.protocol(`expected CR after bulk string, got byte ${chunk[i]}`);
          this.pos++;
          i++;
          this.state = State.BulkLf;
          break;
        }
        case State.BulkLf: {
          if (chunk[i] !== LF) throw this.protocol(`expected LF after bulk string, got byte ${chunk[i]}`);
          this.pos++;
          i++;
          // a copy (or nothing, for an empty argument): it never aliases a chunk
          const arg = this.packed ? null : (this.bulk ?? Buffer.alloc(0));
          this.bulk = null;
          this.bulkDone(arg, out);
          break;
        }
      }
    }
  }

  /** An argument is read (`null`: into `packed`). */
  private bulkDone(arg: Buffer | null, out: RespCommand[]): void {
    if (arg) this.args.push(arg);
    this.argsLeft--;
    if (this.argsLeft === 0) this.emit(out);
    else this.state = State.BulkHeader;
  }

  /** Set by `fastInteger`. */
  private fastValue = 0;

  /**
   * Reads `[-]digits\r\n` at `chunk[from..n)`: returns the index after the LF and sets
   * `fastValue`, or 0 when the header is incomplete or not exactly of that form.
   */
  private fastInteger(chunk: Buffer, from: number, n: number): number {
    let j = from;
    let neg = false;
    if (j < n && chunk[j] === 0x2d) {
      neg = true;
      j++;
    }
    const first = j;
    let v = 0;
    while (j < n) {
      const d = chunk[j] - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
      j++;
    }
    const digits = j - first;
    if (digits < 1 || digits > 15 || j + 1 >= n || chunk[j] !== CR || chunk[j + 1] !== LF) return 0;
    this.fastValue = neg ? -v : v;
    return j + 2;
  }

  private appendLine(part: Buffer): void {
    if (this.state === State.Start && this.lineLength === 0) this.cmdStart = this.pos;
    this.lineLength += part.length;
    // +1: the line may still end in "\r" that is not part of the content.
    if (this.lineLength > this.maxLine + 1) throw this.protocol(`line longer than ${this.maxLine} bytes`);
    this.lineParts.push(Buffer.from(part));
  }

  /** Completes a line with `tail` (the bytes before its LF) and strips a final CR when present. */
  private takeLine(tail: Buffer): { body: Buffer; crlf: boolean } {
    let line = tail;
    if (this.lineParts.length > 0) {
      this.lineParts.push(tail);
      line = Buffer.concat(this.lineParts);
      this.lineParts = [];
    }
    this.lineLength = 0;
    const crlf = line.length > 0 && line[line.length - 1] === CR;
    const body = crlf ? line.subarray(0, line.length - 1) : line;
    if (body.length > this.maxLine) throw this.protocol(`line longer than ${this.maxLine} bytes`);
    return { body, crlf };
  }

  private startLine(line: { body: Buffer; crlf: boolean }, out: RespCommand[]): void {
    const { body } = line;
    if (body.length > 0 && body[0] === STAR) {
      if (!line.crlf) throw this.protocol('array header not terminated by CRLF');
      const count = parseInteger(body, 1);
      if (count === null) throw this.protocol(`invalid array length ${quote(body)}`);
      this.arrayHeader(count, out);
      return;
    }
    // Inline command: words separated by spaces or tabs (no quoting: masters never send any).
    const args: Buffer[] = [];
    let s = -1;
    for (let k = 0; k <= body.length; k++) {
      const c = k < body.length ? body[k] : 0x20;
      const blank = c === 0x20 || c === 0x09 || c === CR;
      if (blank) {
        if (s >= 0) {
          args.push(Buffer.from(body.subarray(s, k)));
          s = -1;
        }
      } else if (s < 0) s = k;
    }
    this.args = args;
    this.emit(out);
  }

  private arrayHeader(count: number, out: RespCommand[]): void {
    if (count > this.maxArgs) throw this.protocol(`array of ${count} arguments exceeds the limit`);
    this.args = [];
    this.packed = this.packFrom > 0 && count >= this.packFrom ? new PackedArgs() : null;
    if (count <= 0) {
      // Redis ignores empty (and null) arrays; the bytes still count.
      this.emit(out);
      return;
    }
    this.argsLeft = count;
    this.state = State.BulkHeader;
  }

  private bulkHeaderLine(line: { body: Buffer; crlf: boolean }): void {
    const { body } = line;
    if (body.length === 0 || body[0] !== DOLLAR) {
      throw this.protocol(`expected '$' in a command array, got ${quote(body)}`);
    }
    if (!line.crlf) throw this.protocol('bulk header not terminated by CRLF');
    const len = parseInteger(body, 1);
    if (len === null) throw this.protocol(`invalid bulk length ${quote(body)}`);
    this.bulkHeader(len);
  }

  private bulkHeader(len: number): void {
    if (len < 0) throw this.protocol(`invalid bulk length ${len}`);
    if (len > this.maxBulk) throw this.protocol(`bulk length ${len} exceeds the limit ${this.maxBulk}`);
    this.bulkLeft = len;
    this.bulkLength = len;
    this.bulk = null;
    this.packed?.push(EMPTY); // its bytes are appended as they come
    this.state = len === 0 ? State.BulkCr : State.BulkData;
  }

  private emit(out: RespCommand[]): void {
    const args = this.packed ? this.packed.view() : this.args;
    this.packed = null;
    out.push({ args, offset: this.cmdStart, size: this.pos - this.cmdStart });
    this.args = [];
    this.argsLeft = 0;
    this.state = State.Start;
    this.cmdStart = this.pos;
  }

  private protocol(message: string): ReplistreamError {
    return new ReplistreamError('PROTOCOL', `replication stream: ${message}`, {
      details: { offset: this.pos, commandOffset: this.cmdStart },
    });
  }
}

/**
 * Parses a signed decimal integer in `buf[from..]`: optional '-', 1 to 15 digits, nothing else.
 * Returns null when malformed. (15 digits keep the value exact in a double.)
 */
export function parseInteger(buf: Buffer, from: number): number | null {
  let i = from;
  let neg = false;
  if (i < buf.length && buf[i] === 0x2d) {
    neg = true;
    i++;
  }
  const digits = buf.length - i;
  if (digits < 1 || digits > 15) return null;
  let v = 0;
  for (; i < buf.length; i++) {
    const c = buf[i] - 0x30;
    if (c < 0 || c > 9) return null;
    v = v * 10 + c;
  }
  return neg ? -v : v;
}

function quote(b: Buffer): string {
  const s = b.subarray(0, 40).toString('latin1');
  return JSON.stringify(b.length > 40 ? `${s}…` : s);
}
