/**
 * Encoding into a reusable scratch buffer.
 *
 * avsc's `toBuffer` writes into its own 1 KB buffer, then allocates a zero-filled Buffer of the
 * exact size and copies into it (and encodes twice when the value is over 1 KB). Encoding many
 * events that way costs more in allocation and copies than in Avro. `EventScratch` instead encodes
 * with `Type.encode(val, buf, pos)` straight into one growing buffer, events back to back; callers
 * copy out once (`encodeEvent`: one event; `encodeBatch` and record-packer.ts's `packEncoded`: a
 * whole EventBatch body). Same avsc writers, so the bytes are the same.
 */
import type avsc from 'avsc';
import { ReplistreamError } from '../common/errors.js';
import { branchBody, eventToAvro, type AvroObj } from './avro-mapping.js';
import { longLen, writeLong } from './avro-varint.js';
import type { ChangeEvent } from './model.js';
import { eventTypes } from './schema.js';
import { eventBranches, fastWriter } from './schema-layout.js';

function encodeFailure(e: ChangeEvent, avro: unknown, cause: unknown): ReplistreamError {
  if (cause instanceof ReplistreamError) return cause;
  const paths: string[] = [];
  try {
    eventTypes().event.isValid(avro, { errorHook: (path: string[]) => paths.push(path.join('.')) });
  } catch {
    /* keep the original error */
  }
  const where = paths.length ? ` (invalid field${paths.length > 1 ? 's' : ''}: ${paths.slice(0, 5).join(', ')})` : '';
  return new ReplistreamError('INTERNAL', `cannot encode ${String(e?.kind)} event${where}: ${(cause as Error)?.message ?? cause}`, {
    cause,
    details: e?.pos ? { pos: e.pos } : undefined,
  });
}

/**
 * The failure of encoding `e` by the fast path (`EventScratch.append`), reported as `encodeEvent`
 * always did: through `eventToAvro` (its own errors first), naming the invalid fields.
 */
function encodeError(e: ChangeEvent, cause: unknown): ReplistreamError {
  let avro: AvroObj;
  try {
    avro = eventToAvro(e);
  } catch (err) {
    return encodeFailure(e, undefined, err);
  }
  return encodeFailure(e, avro, cause);
}

const MIN_SCRATCH_BYTES = 64 * 1024;
/** A scratch buffer grown past this (a huge event or batch) is dropped after use rather than kept. */
const KEEP_SCRATCH_BYTES = 4 * 1024 * 1024;

/**
 * One growing buffer that events are encoded into, back to back (EventBatch array items: union
 * branch index included). Bytes [0, pos) belong to the caller; bytes after pos are garbage.
 *
 * `buf` is replaced (its [0, pos) kept) whenever it grows, and its contents are overwritten by the
 * next use: copy out whatever must outlive the current operation, never keep a subarray of it.
 * Internal to services/events (record-packer.ts packs records with one). Not reentrant.
 */
export class EventScratch {
  buf: Buffer;
  pos = 0;

  constructor(size = MIN_SCRATCH_BYTES) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /**
   * Encode `e` at `pos`. When its encoding is at most `limit` bytes, `pos` moves past it and its
   * length is returned; otherwise `pos` stays and `-length` is returned (the buffer does not grow
   * for an event over the limit: its size is measured by a write that goes past the end).
   */
  append(e: ChangeEvent, limit = Number.POSITIVE_INFINITY): number {
    const fast = fastWriter();
    const size = fast.size(e);
    if (size >= 0) {
      if (size > limit) return -size;
      this.reserve(this.pos + size);
      const end = fast.write(e, this.buf, this.pos);
      if (end - this.pos !== size) throw new ReplistreamError('INTERNAL', `fast writer wrote ${end - this.pos} bytes after measuring ${size}`);
      this.pos = end;
      return size;
    }
    let body: unknown;
    let branch: avsc.Type;
    let tag: number;
    try {
      body = branchBody(e);
      ({ tag, type: branch } = eventBranches()[e.kind]);
    } catch (err) {
      throw encodeFailure(e, undefined, err);
    }
    // the union branch index, then the branch record: what the union type itself writes
    const start = this.pos;
    try {
      this.buf[start] = tag; // dropped when start is past the end; then encode returns < 0
      let end = branch.encode(body, this.buf, start + 1);
      if (end < 0) {
        // too small: avsc returns -(missing bytes) after a complete pass that wrote nothing past the end
        const need = this.buf.length - end;
        if (need - start > limit) return start - need;
        this.reserve(need);
        this.buf[start] = tag;
        end = branch.encode(body, this.buf, start + 1);
        if (end < 0) throw new Error(`avsc wrote past ${this.buf.length} bytes after measuring ${need}`);
      }
      if (end - start > limit) return start - end;
      this.pos = end;
      return end - start;
    } catch (err) {
      throw encodeError(e, err);
    }
  }

  /** Room for `need` bytes from 0, keeping [0, pos). */
  reserve(need: number): void {
    if (need <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.buf.length * 2, need + 64 * 1024 * 1024)));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  /** A fresh EventBatch body holding the `count` events encoded at [start, end). */
  frame(start: number, end: number, count: number): Buffer {
    const out = Buffer.allocUnsafe(batchBodySize(count, end - start));
    let at = 0;
    if (count > 0) {
      at = writeLong(out, 0, count);
      this.buf.copy(out, at, start, end);
      at += end - start;
    }
    out[at++] = 0;
    return out;
  }

  /** Empty again; an oversized buffer (over `keep` bytes) is let go. */
  reset(keep = KEEP_SCRATCH_BYTES): void {
    this.pos = 0;
    if (this.buf.length > keep) this.buf = Buffer.allocUnsafe(MIN_SCRATCH_BYTES);
  }
}

/** Exact size of an EventBatch body holding `count` events whose encodings total `eventBytes`. */
export function batchBodySize(count: number, eventBytes: number): number {
  return count === 0 ? 1 : longLen(count) + eventBytes + 1;
}
