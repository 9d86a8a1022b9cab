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

/** What one `SnapshotReader.push` produced. */
export interface SnapshotProgress {
  /** Snapshot bytes completed by this push, in order (possibly empty; may share memory with the chunk). */
  data: Buffer[];
  /** True once the whole snapshot has been read. */
  done: boolean;
  /** Bytes after the snapshot's end (the start of the command stream), when `done`. */
  rest: Buffer;
}

/**
 * Cuts a snapshot transfer out of the bytes following its preamble, without parsing the RDB.
 *
 * - `$<length>`: exactly `length` bytes; what follows is the command stream.
 * - `$EOF:<mark>`: the RDB is followed by the 40-byte mark. The master sends nothing after the
 *   mark until the replica ACKs, so the transfer ends when the last 40 bytes received equal the
 *   mark (the check Redis's own replica does). The last 40 bytes are held back until more data
 *   shows they are not the mark, so `data` never includes the mark.
 */
export class SnapshotReader {
  private readonly mark: Buffer | null;
  private left: number;
  /** Diskless: the (up to 40) most recent bytes, not yet returned. */
  private tail: Buffer = Buffer.alloc(0);
  private received = 0;
  private finished = false;

  constructor(preamble: { type: 'bulk'; length: number } | { type: 'eof'; mark: Buffer }) {
    if (preamble.type === 'bulk') {
      this.mark = null;
      this.left = preamble.length;
      this.finished = preamble.length === 0;
    } else {
      this.mark = preamble.mark;
      this.left = Infinity;
    }
  }

  get diskless(): boolean {
    return this.mark !== null;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Snapshot bytes returned so far (excluding the mark). */
  get bytes(): number {
    return this.received;
  }

  push(chunk: Buffer): SnapshotProgress {
    if (this.finished) return { data: [], done: true, rest: chunk };
    if (this.mark === null) {
      const take = Math.min(this.left, chunk.length);
      this.left -= take;
      this.received += take;
      this.finished = this.left === 0;
      const data = take > 0 ? [chunk.subarray(0, take)] : [];
      return { data, done: this.finished, rest: chunk.subarray(take) };
    }
    const M = this.mark.length;
    const data: Buffer[] = [];
    let window: Buffer;
    if (chunk.length >= M) {
      if (this.tail.length > 0) data.push(this.tail);
      if (chunk.length > M) data.push(chunk.subarray(0, chunk.length - M));
      window = Buffer.from(chunk.subarray(chunk.length - M));
    } else {
      const joined = Buffer.concat([this.tail, chunk]);
      const cut = Math.max(0, joined.length - M);
      if (cut > 0) data.push(joined.subarray(0, cut));
      window = joined.subarray(cut);
    }
    for (const d of data) this.received += d.length;
    this.tail = window;
    if (window.length === M && window.equals(this.mark)) {
      this.finished = true;
      this.tail = Buffer.alloc(0);
    }
    return { data, done: this.finished, rest: Buffer.alloc(0) };
  }
}
