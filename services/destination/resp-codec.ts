/**
 * RESP2 for the writer's transactions: commands encoded into one buffer, replies read back
 * incrementally. Pure code, no I/O.
 *
 * Why by hand instead of ioredis's command objects: a transaction carries thousands of commands,
 * and ioredis builds a Command (with its own promise, argument conversion and encoding) for each
 * of them; in a profile of the applier that and the garbage it left was the largest cost. Here a
 * whole transaction is measured once and written into one buffer, and its replies are counted,
 * not matched to promises. Everything else (start-up, INFO, scripts, cluster routing) stays on
 * ioredis.
 */
import { packedArgsOf, packedEnd, packedStart } from '../events/packed-args.js';
import { decodeRespCommand, respDigits as digits, writeRespHeader as writeHeader, type EncodedCommand } from '../events/encoded-command.js';

export type RespArg = string | Buffer;
/** A command to send: its arguments, or its bytes already in RESP (an event read that way). */
export type RespCommand = readonly RespArg[] | EncodedCommand | RestoreCommand;

/**
 * `RESTORE <key> <ttl> <payload> REPLACE [ABSTTL]`: the one command of a full sync, a million
 * times over, encoded from a template (the constant parts copied whole, three lengths written)
 * instead of argument by argument. Why: in a profile of an applier's full sync, encoding RESTOREs
 * as argument lists (measuring and copying `RESTORE`, `REPLACE`, `ABSTTL` and the TTL character by
 * character, a call per argument) took a fifth of its time. Payloads of `BIG_ARGUMENT_BYTES` or
 * more are sent as argument lists (written from where they are, not copied).
 */
export class RestoreCommand {
  constructor(
    readonly key: Buffer,
    /** Milliseconds, as digits: an absolute time with `absTtl`, else relative (0: none). */
    readonly ttl: string,
    readonly payload: Buffer,
    readonly absTtl: boolean,
  ) {}

  /** Its argument list (error messages, slow paths). */
  argList(): RespArg[] {
    return this.absTtl ? ['RESTORE', this.key, this.ttl, this.payload, 'REPLACE', 'ABSTTL'] : ['RESTORE', this.key, this.ttl, this.payload, 'REPLACE'];
  }

  /** Bytes of its encoding. */
  encodedLength(): number {
    const k = this.key.length;
    const t = this.ttl.length;
    const p = this.payload.length;
    return (this.absTtl ? RESTORE_ABSTTL_SIZE : RESTORE_SIZE) + digits(k) + k + digits(t) + t + digits(p) + p;
  }

  /** Writes its encoding at `at` of `out`; returns where it ends. */
  encodeInto(out: Buffer, at: number): number {
    out.set(this.absTtl ? RESTORE_6 : RESTORE_5, at);
    at += RESTORE_HEAD;
    at = writeSmall(out, writeHeader(out, at, 0x24, this.key.length), this.key);
    out[at++] = 0x0d;
    out[at++] = 0x0a;
    const ttl = this.ttl;
    at = writeHeader(out, at, 0x24, ttl.length);
    for (let i = 0; i < ttl.length; i++) out[at++] = ttl.charCodeAt(i);
    out[at++] = 0x0d;
    out[at++] = 0x0a;
    at = writeSmall(out, writeHeader(out, at, 0x24, this.payload.length), this.payload);
    out[at++] = 0x0d;
    out[at++] = 0x0a;
    const tail = this.absTtl ? REPLACE_ABSTTL : REPLACE;
    out.set(tail, at);
    return at + tail.length;
  }
}

const RESTORE_6 = Buffer.from('*6\r\n$7\r\nRESTORE\r\n', 'latin1');
const RESTORE_5 = Buffer.from('*5\r\n$7\r\nRESTORE\r\n', 'latin1');
const RESTORE_HEAD = RESTORE_6.length;
const REPLACE = Buffer.from('$7\r\nREPLACE\r\n', 'latin1');
const REPLACE_ABSTTL = Buffer.from('$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n', 'latin1');
/** A RESTORE's bytes apart from the digits of its three lengths and its three arguments. */
const RESTORE_SIZE = RESTORE_HEAD + 3 * (1 + 2 + 2) + REPLACE.length;
const RESTORE_ABSTTL_SIZE = RESTORE_HEAD + 3 * (1 + 2 + 2) + REPLACE_ABSTTL.length;

/** Copies `b` to `at`; returns where it ends. Short ones byte by byte (cheaper than a call). */
function writeSmall(out: Buffer, at: number, b: Buffer): number {
  const n = b.length;
  if (n <= 16) {
    for (let i = 0; i < n; i++) out[at + i] = b[i];
  } else out.set(b, at);
  return at + n;
}

/**
 * Commands encoded earlier (by `encodeCommandChunks`), sent as they are: `count` commands whose
 * bytes are the concatenation of `chunks`. Lets a writer encode a request while the destination
 * is still busy with the previous one, and only send it later.
 */
export interface EncodedBatch {
  readonly chunks: readonly Buffer[];
  readonly count: number;
}

/** What a connection sends: commands, or batches of commands already encoded. */
export type RespSendable = RespCommand | EncodedBatch;

/** Commands in `items` (a batch counts its commands). */
export function commandCount(items: readonly RespSendable[]): number {
  let n = 0;
  for (const it of items) n += isBatch(it) ? it.count : 1;
  return n;
}

function isBatch(item: RespSendable): item is EncodedBatch {
  return (item as EncodedBatch).chunks !== undefined;
}

/** A `-ERR …` reply. Named like ioredis's so the writer's error classification applies to both. */
export class RespReplyError extends Error {
  override name = 'ReplyError';
}

/** A reply: status and bulk strings as strings (utf8), integers, nil, errors, arrays. */
export type RespReply = string | number | null | RespReplyError | RespReply[];

/** UTF-8 length of `s`: short ASCII strings (names, numbers) counted without a call into the encoder. */
function utf8Length(s: string): number {
  const n = s.length;
  if (n > 16) return Buffer.byteLength(s);
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s);
  return n;
}

/** Writes argument `a`, `n` bytes long, at `at`; returns where it ends. */
function writeArgBytes(out: Buffer, at: number, a: RespArg, n: number): number {
  if (typeof a !== 'string') return at + a.copy(out, at);
  if (n === a.length && n <= 16) {
    // short ASCII (names, numbers): byte by byte is cheaper than a call into the encoder
    for (let i = 0; i < n; i++) out[at + i] = a.charCodeAt(i);
    return at + n;
  }
  return at + out.write(a, at, 'utf8');
}

/** Encodes `commands` (each an array of arguments) as RESP arrays of bulk strings, in one buffer. */
export function encodeCommands(commands: readonly (readonly RespArg[])[]): Buffer {
  let size = 0;
  const lengths: number[] = [];
  for (const args of commands) {
    size += 1 + digits(args.length) + 2;
    for (const a of args) {
      const n = typeof a === 'string' ? utf8Length(a) : a.length;
      lengths.push(n);
      size += 1 + digits(n) + 2 + n + 2;
    }
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  let li = 0;
  for (const args of commands) {
    at = writeHeader(out, at, 0x2a, args.length); // '*'
    for (const a of args) {
      const n = lengths[li++];
      at = writeArgBytes(out, writeHeader(out, at, 0x24, n), a, n); // '$'
      out[at++] = 0x0d;
      out[at++] = 0x0a;
    }
  }
  return out;
}

/** Arguments from this size on are not copied by `encodeCommandChunks`. */
export const BIG_ARGUMENT_BYTES = 64 * 1024;

/**
 * `encodeCommands` as a list of buffers whose concatenation is the same bytes: headers and small
 * arguments are encoded into buffers of their own, and every Buffer argument of `bigArgument`
 * bytes or more is itself an element of the list, not copied. For a socket's `writev` (cork, one
 * write per element, uncork).
 *
 * Why: a 100 MB SET encoded into one buffer held the argument twice (the event's copy and the
 * request's) until the write completed; a socket writes the argument from where it is.
 */
/** Argument lengths of `encodeCommandChunks`, kept between calls (grown, never shrunk). */
const lengthsScratch: number[] = [];

export function encodeCommandChunks(commands: readonly RespSendable[], bigArgument = BIG_ARGUMENT_BYTES): Buffer[] {
  const lengths = lengthsScratch;
  let ln = 0;
  /** Sizes of the buffers between big arguments (and around batches). */
  const sizes: number[] = [];
  let size = 0;
  for (let c = 0; c < commands.length; c++) {
    let cmd = commands[c];
    if (cmd instanceof RestoreCommand) {
      if (cmd.payload.length < bigArgument) {
        size += cmd.encodedLength();
        continue;
      }
      cmd = cmd.argList();
    }
    if (isBatch(cmd)) {
      sizes.push(size);
      size = 0;
      continue;
    }
    if (!isArgs(cmd)) {
      size += cmd.respEnd - cmd.respStart;
      continue;
    }
    const args = cmd;
    size += 1 + digits(args.length) + 2;
    const packed = packedArgsOf(args);
    if (packed) {
      // packed arguments (events/packed-args.ts): read from their storage, no Buffer made for each
      for (let i = 0; i < packed.count; i++) {
        const n = packedEnd(packed, i) - packedStart(packed, i);
        size += 1 + digits(n) + 2;
        if (n >= bigArgument) {
          sizes.push(size);
          size = 2;
        } else size += n + 2;
      }
      continue;
    }
    for (const a of args) {
      const n = typeof a === 'string' ? utf8Length(a) : a.length;
      lengths[ln++] = n;
      size += 1 + digits(n) + 2;
      if (typeof a !== 'string' && n >= bigArgument) {
        sizes.push(size);
        size = 2; // its CRLF starts the next buffer
      } else size += n + 2;
    }
  }
  sizes.push(size);
  const chunks: Buffer[] = [];
  let si = 0;
  let out = Buffer.allocUnsafe(sizes[si++]);
  let at = 0;
  let li = 0;
  for (let c = 0; c < commands.length; c++) {
    let cmd = commands[c];
    if (cmd instanceof RestoreCommand) {
      if (cmd.payload.length < bigArgument) {
        at = cmd.encodeInto(out, at);
        continue;
      }
      cmd = cmd.argList();
    }
    if (isBatch(cmd)) {
      if (at > 0) chunks.push(out);
      for (const b of cmd.chunks) if (b.length > 0) chunks.push(b);
      out = Buffer.allocUnsafe(sizes[si++]);
      at = 0;
      continue;
    }
    if (!isArgs(cmd)) {
      // encoded commands lying back to back in one buffer (a record's events) are copied at once
      const src = cmd.resp;
      const from = cmd.respStart;
      let to = cmd.respEnd;
      for (let next = commands[c + 1]; next !== undefined && isEncoded(next) && next.resp === src && next.respStart === to; next = commands[c + 1]) {
        to = next.respEnd;
        c++;
      }
      at += src.copy(out, at, from, to);
      continue;
    }
    const args = cmd;
    at = writeHeader(out, at, 0x2a, args.length); // '*'
    const packed = packedArgsOf(args);
    if (packed) {
      const data = packed.data;
      for (let i = 0; i < packed.count; i++) {
        const from = packedStart(packed, i);
        const n = packedEnd(packed, i) - from;
        at = writeHeader(out, at, 0x24, n); // '$'
        if (n >= bigArgument) {
          chunks.push(out, data.subarray(from, from + n));
          out = Buffer.allocUnsafe(sizes[si++]);
          at = 0;
        } else at += data.copy(out, at, from, from + n);
        out[at++] = 0x0d;
        out[at++] = 0x0a;
      }
      continue;
    }
    for (const a of args) {
      const n = lengths[li++];
      at = writeHeader(out, at, 0x24, n); // '$'
      if (typeof a !== 'string' && n >= bigArgument) {
        chunks.push(out, a);
        out = Buffer.allocUnsafe(sizes[si++]);
        at = 0;
      } else at = writeArgBytes(out, at, a, n);
      out[at++] = 0x0d;
      out[at++] = 0x0a;
    }
  }
  if (at > 0 || chunks.length === 0) chunks.push(out);
  return chunks;
}

function isArgs(cmd: RespSendable): cmd is readonly RespArg[] {
  return Array.isArray(cmd);
}

function isEncoded(cmd: RespSendable): cmd is EncodedCommand {
  return (cmd as EncodedCommand).resp !== undefined;
}

/** The arguments of a command to send (an encoded one decoded: for messages and slow paths). */
export function commandArgs(cmd: RespCommand): readonly RespArg[] {
  if (isArgs(cmd)) return cmd;
  if (cmd instanceof RestoreCommand) return cmd.argList();
  return decodeRespCommand(cmd.resp, cmd.respStart, cmd.respEnd);
}

/** Thrown for bytes that are not RESP2. */
export class RespProtocolError extends Error {}

/**
 * Reads RESP2 replies from chunks as they arrive. `push` returns the replies completed by the
 * chunk (possibly none); a reply split across chunks is resumed where it stopped, so a large
 * transaction's replies are parsed once, not re-scanned from the start at every chunk.
 */
export class RespReplyParser {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Arrays being filled, innermost last. */
  private readonly stack: Array<{ items: RespReply[]; want: number }> = [];

  push(chunk: Buffer): RespReply[] {
    this.buf = this.pos < this.buf.length ? Buffer.concat([this.buf.subarray(this.pos), chunk]) : chunk;
    this.pos = 0;
    const out: RespReply[] = [];
    for (;;) {
      const start = this.pos;
      const r = this.readOne();
      if (r === undefined) {
        this.pos = start;
        break;
      }
      if (r === ARRAY_OPENED) continue;
      let value: RespReply = r;
      // close every array this value completes
      for (;;) {
        const top = this.stack[this.stack.length - 1];
        if (!top) {
          out.push(value);
          break;
        }
        top.items.push(value);
        if (top.items.length < top.want) break;
        this.stack.pop();
        value = top.items;
      }
    }
    if (this.pos >= this.buf.length) {
      this.buf = Buffer.alloc(0);
      this.pos = 0;
    }
    return out;
  }

  /** Nothing half-read is held. */
  get idle(): boolean {
    return this.stack.length === 0 && this.pos >= this.buf.length;
  }

  private line(): string | undefined {
    const end = this.buf.indexOf(0x0a, this.pos);
    if (end < 0) return undefined;
    const text = this.buf.toString('utf8', this.pos + 1, end > 0 && this.buf[end - 1] === 0x0d ? end - 1 : end);
    this.pos = end + 1;
    return text;
  }

  private readOne(): RespReply | typeof ARRAY_OPENED | undefined {
    if (this.pos >= this.buf.length) return undefined;
    const type = this.buf[this.pos];
    switch (type) {
      case 0x2b: {
        // '+': the two status replies a transaction is made of (+QUEUED per command, +OK per
        // write in EXEC's array) without a string made for each
        const b = this.buf;
        const p = this.pos;
        if (b[p + 1] === 0x4f && b[p + 2] === 0x4b && b[p + 3] === 0x0d && b[p + 4] === 0x0a) {
          this.pos = p + 5;
          return 'OK';
        }
        if (b[p + 1] === 0x51 && b[p + 2] === 0x55 && b[p + 3] === 0x45 && b[p + 4] === 0x55 && b[p + 5] === 0x45 && b[p + 6] === 0x44 && b[p + 7] === 0x0d && b[p + 8] === 0x0a) {
          this.pos = p + 9;
          return 'QUEUED';
        }
        return this.line();
      }
      case 0x2d: {
        // '-'
        const text = this.line();
        return text === undefined ? undefined : new RespReplyError(text);
      }
      case 0x3a: {
        // ':'
        const text = this.line();
        if (text === undefined) return undefined;
        const n = Number(text);
        if (!Number.isInteger(n)) throw new RespProtocolError(`integer reply ${JSON.stringify(text)}`);
        return n;
      }
      case 0x24: {
        // '$'
        const save = this.pos;
        const text = this.line();
        if (text === undefined) return undefined;
        const n = Number(text);
        if (n === -1) return null;
        if (!Number.isInteger(n) || n < 0) throw new RespProtocolError(`bulk length ${JSON.stringify(text)}`);
        if (this.buf.length < this.pos + n + 2) {
          this.pos = save;
          return undefined;
        }
        const s = this.buf.toString('utf8', this.pos, this.pos + n);
        this.pos += n + 2;
        return s;
      }
      case 0x2a: {
        // '*'
        const text = this.line();
        if (text === undefined) return undefined;
        const n = Number(text);
        if (n === -1) return null;
        if (!Number.isInteger(n) || n < 0) throw new RespProtocolError(`array length ${JSON.stringify(text)}`);
        if (n === 0) return [];
        this.stack.push({ items: [], want: n });
        return ARRAY_OPENED;
      }
      default:
        throw new RespProtocolError(`unexpected byte 0x${type.toString(16)} at the start of a reply`);
    }
  }
}

const ARRAY_OPENED = Symbol('array opened');
