/**
 * What the splitters (split-snapshot-key.ts, split-command.ts) measure and cut with: exact Avro
 * sizes of what a piece holds, and the slicing of one element too big for a piece. Such an
 * element (a 5 MB list item, a 5 MB SET argument …) is cut into parts that the next pieces
 * continue (`piece.continued = true`); `joinBufferLists` is the inverse, used by reassembly.
 */
import { ReplistreamError } from '../common/errors.js';
import { longLen } from './avro-varint.js';
import type { EventPiece } from './model.js';
import { packedArgsOf, packedEnd, packedRange, packedStart, type PackedStorage } from './packed-args.js';

// ---------------------------------------------------------------------------------------------
// Encoded sizes (exact, Avro binary encoding)

const bytesLen = (len: number): number => longLen(len) + len;
export const bufLen = (b: Buffer): number => bytesLen(b.length);
/** A non-empty array's count varint (upper bound) — the terminating 0 is counted by the caller. */
export const ARRAY_COUNT = 10;
export function listLen(bufs: Buffer[]): number {
  let n = 1;
  if (bufs.length) n += longLen(bufs.length);
  const packed = packedArgsOf(bufs);
  if (packed) {
    for (let i = 0; i < packed.count; i++) n += bytesLen(packedEnd(packed, i) - packedStart(packed, i));
    return n;
  }
  for (const b of bufs) n += bufLen(b);
  return n;
}
export const STREAM_ID = 16;
/** Headroom per piece for top-level array counts, the piece record and the payload length. */
export const PIECE_SLACK = 64;
export const EMPTY = Buffer.alloc(0);

/** A piece record at its largest (index varint at its longest): what a skeleton is measured with. */
export const BIG_PIECE: EventPiece = { index: 0x3fff_ffff, last: false, continued: true };

/** The error for an event part that a record cannot hold even alone. */
export function tooBig(what: string, details: Record<string, unknown>): ReplistreamError {
  return new ReplistreamError('INTERNAL', `${what} does not fit in one Kafka record even alone; raise the record limit`, { details });
}

// ---------------------------------------------------------------------------------------------
// Slicing one element

/**
 * Slice components (e.g. [field, value] of a hash entry) into parts: part k holds one slice of
 * every component (maybe empty); concatenating the parts component-wise gives the originals.
 * Part 0 costs at most `firstRoom`, the others at most `room` (cost = Σ bytesLen(slice) + fixed).
 */
export function sliceComponents(comps: Buffer[], fixed: number, firstRoom: number, room: number): Buffer[][] {
  const parts: Buffer[][] = [];
  let cur: Buffer[] = comps.map(() => EMPTY);
  let avail = firstRoom - fixed - comps.length; // every slot costs ≥ 1 byte (its length)
  for (let c = 0; c < comps.length; c++) {
    const b = comps[c];
    let off = 0;
    while (off < b.length) {
      // a slice of n bytes costs n + longLen(n) ≤ n + 5 (n < 2^34); its empty slot was counted as 1
      const n = Math.min(b.length - off, avail - 4);
      if (n > 0) {
        cur[c] = b.subarray(off, off + n);
        off += n;
        avail -= n + longLen(n) - 1;
      }
      if (off < b.length) {
        parts.push(cur);
        cur = comps.map(() => EMPTY);
        avail = room - fixed - comps.length;
      }
    }
  }
  parts.push(cur);
  return parts;
}

/**
 * Slice a list of buffers (a command's arguments, a stream entry's fields) into fragments that
 * rebuild it by `joinBufferLists`: each later fragment's first buffer is appended to the previous
 * fragment's last buffer, its other buffers follow. Fragment cost = listLen + ARRAY_COUNT + fixed.
 */
export function sliceBufferList(list: Buffer[], fixed: number, firstRoom: number, room: number): Buffer[][] {
  const frags: Buffer[][] = [];
  let cur: Buffer[] = [];
  let avail = firstRoom - fixed - ARRAY_COUNT - 1;
  const close = () => {
    frags.push(cur);
    cur = [];
    avail = room - fixed - ARRAY_COUNT - 1;
  };
  for (const b of list) {
    let off = 0;
    for (;;) {
      const rest = b.length - off;
      if (bytesLen(rest) <= avail) {
        cur.push(off === 0 ? b : b.subarray(off));
        avail -= bytesLen(rest);
        break;
      }
      const n = avail - 5; // bytesLen(n) <= n + 5 for n < 2^35
      if (n > 0) {
        // a slice of b ends this fragment; the next one starts with the rest of b (joined onto it)
        cur.push(b.subarray(off, off + n));
        off += n;
        close();
      } else {
        // nothing of b fits: end the fragment at the boundary; the next one starts with an empty
        // buffer (joined onto the previous buffer: a no-op), then b
        if (cur.length === 0) throw new ReplistreamError('INTERNAL', 'split: record limit too small to hold an argument slice');
        close();
        cur.push(EMPTY);
        avail -= 1;
      }
    }
  }
  frags.push(cur);
  return frags;
}

/**
 * `sliceBufferList` for packed arguments (packed-args.ts): the same fragments, each a view of a
 * range of the packed storage rather than an array of Buffers, so that cutting a command of a
 * million arguments into pieces makes no Buffer per argument. (A fragment that starts with an empty
 * buffer joined onto the previous one is the empty end of the previous argument here.)
 */
export function slicePackedList(s: PackedStorage, fixed: number, firstRoom: number, room: number): Buffer[][] {
  const frags: Buffer[][] = [];
  let avail = firstRoom - fixed - ARRAY_COUNT - 1;
  /** The fragment being made: its first argument, where that starts, and how many it holds. */
  let from = 0;
  let head = 0;
  let count = 0;
  const close = (to: number, tail: number) => {
    frags.push(packedRange(s, from, to, head, tail));
    count = 0;
    avail = room - fixed - ARRAY_COUNT - 1;
  };
  const add = (i: number, at: number) => {
    if (count === 0) {
      from = i;
      head = at;
    }
    count++;
  };
  for (let i = 0; i < s.count; i++) {
    const end = packedEnd(s, i);
    let at = packedStart(s, i);
    for (;;) {
      const rest = end - at;
      if (bytesLen(rest) <= avail) {
        add(i, at);
        avail -= bytesLen(rest);
        break;
      }
      const n = avail - 5;
      if (n > 0) {
        add(i, at);
        close(i + 1, at + n);
        at += n;
      } else {
        if (count === 0) throw new ReplistreamError('INTERNAL', 'split: record limit too small to hold an argument slice');
        const prevEnd = packedEnd(s, i - 1);
        close(i, prevEnd);
        add(i - 1, prevEnd); // the empty end of the previous argument: joined onto it, a no-op
        avail -= 1;
      }
    }
  }
  frags.push(count === 0 ? [] : packedRange(s, from, s.count, head, packedEnd(s, s.count - 1)));
  return frags;
}

/** Rebuild: append fragment `next` onto the list `acc` (mutated) per `sliceBufferList`'s rule. */
export function joinBufferLists(acc: Buffer[], next: Buffer[]): void {
  if (next.length === 0) return;
  if (acc.length === 0) {
    acc.push(...next);
    return;
  }
  acc[acc.length - 1] = Buffer.concat([acc[acc.length - 1], next[0]]);
  for (let i = 1; i < next.length; i++) acc.push(next[i]);
}
