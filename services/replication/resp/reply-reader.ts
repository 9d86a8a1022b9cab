import { ReplistreamError } from '../../common/errors.js';
import { parseInteger } from './parser.js';

/** One line a master sends during the replica handshake and before a snapshot. */
export type HandshakeReply =
  /** A bare newline: keepalive while the master prepares a snapshot. */
  | { type: 'newline' }
  /** `+text` (e.g. `PONG`, `OK`, `FULLRESYNC <replid> <offset>`, `CONTINUE [<replid>]`). */
  | { type: 'status'; text: string }
  /** `-text` (e.g. `NOAUTH …`, `ERR …`, `LOADING …`). */
  | { type: 'error'; text: string }
  /** `$<length>`: a disk-based snapshot of exactly `length` bytes follows (no trailing CRLF). */
  | { type: 'bulk'; length: number }
  /** `$EOF:<mark>`: a diskless snapshot follows, ended by the same 40-byte mark. */
  | { type: 'eof'; mark: Buffer };

export const EOF_MARK_LENGTH = 40;

/**
 * Reads handshake replies one line at a time. Pull-based, so the caller decides where the
 * replies end: after `+CONTINUE` or a `$…` preamble it calls `takeRemainder()` and hands the
 * rest of the bytes to the snapshot reader or the command-stream parser.
 *
 * Lines end in `\n`, with an optional `\r` before it (as Redis's replica reads them).
 * Anything but `+`, `-`, `$` or an empty line throws `ReplistreamError('PROTOCOL')`.
 */
export class ReplyReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxLine: number;

  constructor(opts: { maxLineLength?: number } = {}) {
    this.maxLine = opts.maxLineLength ?? 64 * 1024;
  }

  /** Appends bytes received from the master. */
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Next complete reply, or undefined when more bytes are needed. */
  next(): HandshakeReply | undefined {
    const nl = this.buf.indexOf(0x0a);
    if (nl < 0) {
      if (this.buf.length > this.maxLine + 1) {
        throw new ReplistreamError('PROTOCOL', `master reply longer than ${this.maxLine} bytes`);
      }
      return undefined;
    }
    let line = this.buf.subarray(0, nl);
    this.buf = this.buf.subarray(nl + 1);
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (line.length === 0) return { type: 'newline' };
    const text = line.subarray(1).toString('latin1');
    switch (line[0]) {
      case 0x2b /* + */:
        return { type: 'status', text };
      case 0x2d /* - */:
        return { type: 'error', text };
      case 0x24 /* $ */: {
        if (text.startsWith('EOF:')) {
          const mark = line.subarray(5);
          if (mark.length < EOF_MARK_LENGTH) {
            throw new ReplistreamError('PROTOCOL', `snapshot EOF mark shorter than ${EOF_MARK_LENGTH} bytes`);
          }
          return { type: 'eof', mark: Buffer.from(mark.subarray(0, EOF_MARK_LENGTH)) };
        }
        const length = parseInteger(line, 1);
        if (length === null || length < 0) {
          throw new ReplistreamError('PROTOCOL', `invalid snapshot length ${JSON.stringify(text.slice(0, 40))}`);
        }
        return { type: 'bulk', length };
      }
      default:
        throw new ReplistreamError('PROTOCOL', `unexpected reply from master: ${JSON.stringify(line.subarray(0, 40).toString('latin1'))}`);
    }
  }

  /** Returns and forgets every byte not yet returned as a reply. */
  takeRemainder(): Buffer {
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
