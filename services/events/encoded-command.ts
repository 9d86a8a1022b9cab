/**
 * A command event read with its command already encoded as RESP, the bytes a Redis destination
 * takes (`*3\r\n$3\r\nSET\r\n…`). The applier's reader (fast-reader.ts) makes these for a
 * standalone destination: the writer sends the bytes as they are and never builds the arguments.
 *
 * Why: nearly every event of a busy topic is one command written as it is. Read into the model,
 * each was an argument list and a Buffer view per argument (about 108 bytes of heap each), which
 * the writer then copied into the request: in a profile of an applier draining 600,000 SETs, a
 * fifth of its time went to the collector copying such events of the plans in flight, and another
 * fifth to building and re-encoding them. Here an event is one object and a range of a buffer
 * shared by its record's events.
 *
 * `commands` is still there for every other reader (a cluster destination, translated commands,
 * error messages, rate limits): it is decoded from the bytes the first time it is read.
 */
import type { CommandEvent, SourcePosition } from './model.js';
import { NO_PARTICIPANTS } from './model.js';

/** A command already encoded as RESP: bytes `[respStart, respEnd)` of `resp`. */
export interface EncodedCommand {
  readonly resp: Buffer;
  readonly respStart: number;
  readonly respEnd: number;
}

export class EncodedCommandEvent implements CommandEvent, EncodedCommand {
  readonly kind = 'command' as const;
  readonly piece = null;
  /** Decoded on first read (not an own enumerable field: a spread copy must not carry it). */
  #commands: Buffer[][] | null = null;

  constructor(
    readonly pos: SourcePosition,
    readonly db: number,
    /** The one command's bytes: `[respStart, respEnd)` of `resp` (shared with other events). */
    readonly resp: Buffer,
    readonly respStart: number,
    readonly respEnd: number,
    /** The command's name as it came (shared between events: never written to). */
    readonly name: Buffer,
    /** Where its second argument (the key of most commands) lies in `resp`; -1 when it has none. */
    readonly keyStart: number,
    readonly keyEnd: number,
    readonly participants: Array<{ db: number; partition: number }> = NO_PARTICIPANTS,
  ) {}

  get commands(): Buffer[][] {
    return (this.#commands ??= [decodeRespCommand(this.resp, this.respStart, this.respEnd)]);
  }
}

/** Decimal digits of a length (`n` ≥ 0). */
export function respDigits(n: number): number {
  if (n < 10) return 1;
  if (n < 100) return 2;
  let d = 3;
  for (n = Math.floor(n / 1000); n > 0; n = Math.floor(n / 10)) d++;
  return d;
}

/** Writes `<prefix><n>\r\n` at `at` (lengths as ASCII digits, without a string in between); returns where it ends. */
export function writeRespHeader(out: Uint8Array, at: number, prefix: number, n: number): number {
  out[at++] = prefix;
  const d = respDigits(n);
  for (let i = at + d - 1; i >= at; i--) {
    out[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  at += d;
  out[at++] = 0x0d;
  out[at++] = 0x0a;
  return at;
}

/**
 * The arguments of the RESP array at `[start, end)` of `buf`, as views. Only for bytes written by
 * `writeRespHeader` and this module's writers (trusted, whole): a streaming parser that checks
 * every byte (replication/resp/parser.ts) is not needed to read them back.
 */
export function decodeRespCommand(buf: Buffer, start: number, end: number): Buffer[] {
  let p = start + 1; // '*'
  let n = 0;
  while (buf[p] !== 0x0d) n = n * 10 + (buf[p++] - 0x30);
  p += 2;
  const args: Buffer[] = new Array<Buffer>(n);
  for (let i = 0; i < n; i++) {
    p++; // '$'
    let len = 0;
    while (buf[p] !== 0x0d) len = len * 10 + (buf[p++] - 0x30);
    p += 2;
    args[i] = buf.subarray(p, p + len);
    p += len + 2;
  }
  if (p !== end) throw new Error(`encoded command ends at ${p}, not ${end}`);
  return args;
}

/** Bytes of the arguments of the RESP array at `[start, end)` of `buf` (what a rate limit counts), read as `decodeRespCommand` reads. */
export function respArgumentBytes(buf: Buffer, start: number, end: number): number {
  let p = start + 1; // '*'
  let n = 0;
  while (buf[p] !== 0x0d) n = n * 10 + (buf[p++] - 0x30);
  p += 2;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    p++; // '$'
    let len = 0;
    while (buf[p] !== 0x0d) len = len * 10 + (buf[p++] - 0x30);
    p += 2 + len + 2;
    bytes += len;
  }
  if (p !== end) throw new Error(`encoded command ends at ${p}, not ${end}`);
  return bytes;
}
