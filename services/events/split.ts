/**
 * Keeping Kafka records under the broker's limit (G7 in docs/guarantees.md).
 *
 * - `splitForRecordLimit(event, maxBytes)` cuts an event whose encoding would not fit one record
 *   into pieces (`piece: {index, last}`), each fitting alone in a record of `maxBytes`:
 *   - snapshot key: the RESTORE `payload` is sliced (pieces 0…k carry consecutive slices), then the
 *     typed `value`'s elements are spread over pieces (each piece's value holds a slice of the list
 *     items / set members / zset or hash entries / stream entries and groups). Every piece repeats
 *     db, key, type, expireAtMs and pos. A stream piece repeats the stream metadata; a consumer
 *     group (or consumer) may appear in several pieces, each with a slice of its PEL.
 *   - command unit: the `commands` are spread over pieces; piece i has `pos.seq = pos.seq + i`
 *     (model.ts: seq is the piece of a split command), the other fields repeated.
 *   - an element bigger than one record (a 5 MB list item, a 5 MB SET argument …) is itself sliced:
 *     the next piece has `piece.continued = true` and its first element extends the previous
 *     piece's last one (bytes appended; for a command or stream entry, its first argument/field is
 *     appended to the last one and the others follow).
 * - `PieceAssembler` (one per partition, in offset order) rebuilds the whole event from its pieces.
 * - `packBatches(events, maxBytes)` packs consecutive events (split first when needed) into
 *   EventBatch records no bigger than `maxBytes`, order preserved.
 *
 * `maxBytes` bounds a whole record value in the Confluent wire format: the 5-byte header
 * (0x00 + int32 schema id) plus the EventBatch Avro body. Record key, headers and Kafka's own
 * framing come on top: the default 900 000 leaves ~148 KB under the broker's default
 * `message.max.bytes` (1 048 588).
 */
import { constants as bufferConstants } from 'node:buffer';
import { ReplistreamError } from '../common/errors.js';
import { EventScratch, batchBodySize, encodeEvent, encodeEventWithin, encodedEventSize } from './codec.js';
import { longLen } from './fast-writer.js';
import { growTo, newResizable, PACK_ARGS_FROM, PackedArgs, packedArgsOf, packedEnd, packedRange, packedStart, resizableArrayBuffers, type PackedStorage } from './packed-args.js';
import type { ChangeEvent, CommandEvent, EventPiece, SnapshotKey, SourcePosition, StreamValue, TypedValue } from './model.js';

export const DEFAULT_MAX_RECORD_BYTES = 900_000;
/** 0x00 + int32 BE schema id. */
export const WIRE_HEADER_BYTES = 5;
/** Below this, a record limit cannot hold a useful piece. */
export const MIN_RECORD_BYTES = 1024;

/** The largest encoded event (`encodeEvent(e).length`) that fits alone in a record of `maxBytes`. */
export function maxEventBytes(maxBytes = DEFAULT_MAX_RECORD_BYTES): number {
  return maxBytes - WIRE_HEADER_BYTES - batchBodySize(1, 0);
}

// ---------------------------------------------------------------------------------------------
// Encoded sizes (exact, Avro binary encoding)

const bytesLen = (len: number): number => longLen(len) + len;
const bufLen = (b: Buffer): number => bytesLen(b.length);
/** A non-empty array's count varint (upper bound) — the terminating 0 is counted by the caller. */
const ARRAY_COUNT = 10;
function listLen(bufs: Buffer[]): number {
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
const STREAM_ID = 16;
/** Headroom per piece for top-level array counts, the piece record and the payload length. */
const PIECE_SLACK = 64;
const EMPTY = Buffer.alloc(0);
/** The largest Buffer node makes. */
const MAX_LENGTH = bufferConstants.MAX_LENGTH;

// ---------------------------------------------------------------------------------------------
// Slicing one element

/**
 * Slice components (e.g. [field, value] of a hash entry) into parts: part k holds one slice of
 * every component (maybe empty); concatenating the parts component-wise gives the originals.
 * Part 0 costs at most `firstRoom`, the others at most `room` (cost = Σ bytesLen(slice) + fixed).
 */
function sliceComponents(comps: Buffer[], fixed: number, firstRoom: number, room: number): Buffer[][] {
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
function sliceBufferList(list: Buffer[], fixed: number, firstRoom: number, room: number): Buffer[][] {
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
function slicePackedList(s: PackedStorage, fixed: number, firstRoom: number, room: number): Buffer[][] {
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
function joinBufferLists(acc: Buffer[], next: Buffer[]): void {
  if (next.length === 0) return;
  if (acc.length === 0) {
    acc.push(...next);
    return;
  }
  acc[acc.length - 1] = Buffer.concat([acc[acc.length - 1], next[0]]);
  for (let i = 1; i < next.length; i++) acc.push(next[i]);
}

// ---------------------------------------------------------------------------------------------
// Snapshot keys

interface KeyDraft {
  payload: Buffer | null;
  value: TypedValue | null;
  continued: boolean;
  room: number;
}

function emptyLike(v: TypedValue): TypedValue {
  switch (v.type) {
    case 'string':
      return { type: 'string', value: EMPTY };
    case 'list':
      return { type: 'list', items: [] };
    case 'set':
      return { type: 'set', members: [] };
    case 'zset':
      return { type: 'zset', entries: [] };
    case 'hash':
      return { type: 'hash', entries: [] };
    case 'stream': {
      const { entries: _e, groups: _g, ...meta } = v.stream;
      return { type: 'stream', stream: { ...meta, entries: [], groups: [] } };
    }
    case 'module':
      return { type: 'module', moduleId: v.moduleId };
  }
}

const BIG_PIECE: EventPiece = { index: 0x3fff_ffff, last: false, continued: true };

function tooBig(what: string, details: Record<string, unknown>): ReplistreamError {
  return new ReplistreamError('INTERNAL', `${what} does not fit in one Kafka record even alone; raise the record limit`, { details });
}

function splitSnapshotKey(e: SnapshotKey, budget: number): SnapshotKey[] {
  const skeleton: SnapshotKey = {
    ...e,
    payload: e.payload === null ? null : EMPTY,
    value: e.value === null ? null : emptyLike(e.value),
    piece: BIG_PIECE,
  };
  const base = encodedEventSize(skeleton);
  const C = budget - base - PIECE_SLACK;
  if (C < 256) throw tooBig(`the skeleton of snapshot key (${base} bytes: key name and metadata)`, { keyBytes: e.key.length, base });

  const drafts: KeyDraft[] = [];
  const fresh = (continued = false): KeyDraft => {
    const d: KeyDraft = { payload: null, value: null, continued, room: C };
    drafts.push(d);
    return d;
  };
  let d = fresh();

  // 1. payload slices
  if (e.payload !== null) {
    let off = 0;
    d.payload = EMPTY;
    while (off < e.payload.length) {
      if (d.room < 64) d = fresh();
      const n = Math.min(e.payload.length - off, d.room - 8);
      d.payload = e.payload.subarray(off, off + n);
      d.room -= n + 8;
      off += n;
      if (off < e.payload.length) d = fresh();
    }
  }
  if (e.value === null) return finishKeys(e, drafts);

  // 2. typed value
  const v = e.value;
  const val = (): TypedValue => (d.value ??= emptyLike(v));
  /** Place an element: cost, the mutation that adds it, and how to slice it when it is too big. */
  const place = (cost: number, add: () => void, slice?: (firstRoom: number) => Array<() => void>) => {
    if (cost <= d.room) {
      val();
      add();
      d.room -= cost;
      return;
    }
    if (cost <= C || !slice) {
      if (cost > C) throw tooBig('an element of a snapshot key', { cost, C });
      d = fresh();
      val();
      add();
      d.room -= cost;
      return;
    }
    if (d.room < 256) d = fresh();
    const adders = slice(d.room);
    adders.forEach((addPart, i) => {
      if (i > 0) d = fresh(true);
      val();
      addPart();
      d.room = 0; // a sliced part fills its piece's remaining room (conservatively)
    });
    // the last part may leave room: recompute nothing, start the next element in a new piece
  };

  switch (v.type) {
    case 'module':
      val();
      break;
    case 'string': {
      val();
      let off = 0;
      while (off < v.value.length) {
        if (d.room < 64) d = fresh();
        const n = Math.min(v.value.length - off, d.room - 8);
        const cur = val() as { type: 'string'; value: Buffer };
        cur.value = v.value.subarray(off, off + n);
        d.room -= n + 8;
        off += n;
        if (off < v.value.length) d = fresh();
      }
      break;
    }
    case 'list':
    case 'set': {
      const items = v.type === 'list' ? v.items : v.members;
      const target = () => {
        const cur = val();
        return cur.type === 'list' ? cur.items : (cur as { members: Buffer[] }).members;
      };
      val();
      for (const it of items) {
        place(
          bufLen(it),
          () => target().push(it),
          (firstRoom) => sliceComponents([it], 0, firstRoom, C).map((p) => () => target().push(p[0])),
        );
      }
      break;
    }
    case 'zset': {
      const target = () => (val() as Extract<TypedValue, { type: 'zset' }>).entries;
      val();
      for (const z of v.entries) {
        place(
          bufLen(z.member) + 8,
          () => target().push(z),
          (firstRoom) => sliceComponents([z.member], 8, firstRoom, C).map((p) => () => target().push({ member: p[0], score: z.score })),
        );
      }
      break;
    }
    case 'hash': {
      const target = () => (val() as Extract<TypedValue, { type: 'hash' }>).entries;
      val();
      for (const h of v.entries) {
        const fixed = 1 + (h.expireAtMs === null ? 0 : longLen(h.expireAtMs));
        place(
          bufLen(h.field) + bufLen(h.value) + fixed,
          () => target().push(h),
          (firstRoom) =>
            sliceComponents([h.field, h.value], fixed, firstRoom, C).map(
              (p) => () => target().push({ field: p[0], value: p[1], expireAtMs: h.expireAtMs }),
            ),
        );
      }
      break;
    }
    case 'stream':
      d = splitStream(v.stream, C, val, place, () => d, (c?: boolean) => (d = fresh(c)));
      break;
  }
  return finishKeys(e, drafts);
}

type Placer = (cost: number, add: () => void, slice?: (firstRoom: number) => Array<() => void>) => void;

function splitStream(
  s: StreamValue,
  C: number,
  val: () => TypedValue,
  place: Placer,
  current: () => KeyDraft,
  fresh: (continued?: boolean) => KeyDraft,
): KeyDraft {
  const st = () => (val() as Extract<TypedValue, { type: 'stream' }>).stream;
  val();
  for (const en of s.entries) {
    place(
      STREAM_ID + listLen(en.fields) + ARRAY_COUNT,
      () => st().entries.push(en),
      (firstRoom) => sliceBufferList(en.fields, STREAM_ID, firstRoom, C).map((f) => () => st().entries.push({ id: en.id, fields: f })),
    );
  }
  type Group = StreamValue['groups'][number];
  type Consumer = Group['consumers'][number];
  for (const g of s.groups) {
    const groupHead = bufLen(g.name) + STREAM_ID + 1 + (g.entriesRead === undefined ? 0 : longLen(g.entriesRead)) + 2 + 2 * ARRAY_COUNT;
    if (groupHead * 4 > C) throw tooBig('a stream consumer group name', { bytes: g.name.length });
    const { pending: _gp, consumers: _gc, ...groupMeta } = g;
    let frag: Group | null = null;
    let fragDraft: KeyDraft | null = null;
    /** g's fragment in the current piece, with `need` bytes of room after it (a new piece if needed). */
    const groupIn = (need: number): Group => {
      let d = current();
      if (frag && fragDraft === d && d.room >= need) return frag;
      if (fragDraft === d || d.room < groupHead + need) d = fresh();
      frag = { ...groupMeta, pending: [], consumers: [] };
      st().groups.push(frag);
      fragDraft = d;
      d.room -= groupHead;
      return frag;
    };
    groupIn(0);
    for (const p of g.pending) {
      const cost = STREAM_ID + longLen(p.deliveryTimeMs) + longLen(p.deliveryCount) + 1 + (p.consumer === undefined ? 0 : bufLen(p.consumer));
      groupIn(cost).pending.push(p);
      current().room -= cost;
    }
    for (const c of g.consumers) {
      const consumerHead = bufLen(c.name) + longLen(c.seenTimeMs) + 1 + (c.activeTimeMs === undefined ? 0 : longLen(c.activeTimeMs)) + 1 + ARRAY_COUNT;
      if ((groupHead + consumerHead) * 4 > C) throw tooBig('a stream consumer name', { bytes: c.name.length });
      const { pending: _cp, ...consumerMeta } = c;
      let cfrag: Consumer | null = null;
      let cfragDraft: KeyDraft | null = null;
      const consumerIn = (need: number): Consumer => {
        if (cfrag && cfragDraft === current() && current().room >= need) return cfrag;
        const gf = groupIn(consumerHead + need);
        cfrag = { ...consumerMeta, pending: [] };
        gf.consumers.push(cfrag);
        cfragDraft = current();
        current().room -= consumerHead;
        return cfrag;
      };
      consumerIn(0);
      for (const id of c.pending) {
        consumerIn(STREAM_ID).pending.push(id);
        current().room -= STREAM_ID;
      }
    }
  }
  return current();
}

function finishKeys(e: SnapshotKey, drafts: KeyDraft[]): SnapshotKey[] {
  return drafts.map((d, i) => {
    const piece: EventPiece = { index: i, last: i === drafts.length - 1 };
    if (d.continued) piece.continued = true;
    return { ...e, payload: d.payload, value: d.value, piece };
  });
}

// ---------------------------------------------------------------------------------------------
// Command units

function splitCommand(e: CommandEvent, budget: number): CommandEvent[] {
  const base = encodedEventSize({ ...e, commands: [], piece: BIG_PIECE, pos: { ...e.pos, seq: e.pos.seq + 0x3fff_ffff } });
  const C = budget - base - PIECE_SLACK;
  if (C < 256) throw tooBig('the skeleton of a command event', { base });
  const drafts: Array<{ commands: Buffer[][]; continued: boolean; room: number }> = [];
  const fresh = (continued = false) => {
    const d = { commands: [] as Buffer[][], continued, room: C };
    drafts.push(d);
    return d;
  };
  let d = fresh();
  for (const args of e.commands) {
    const cost = listLen(args) + ARRAY_COUNT;
    if (cost <= d.room) {
      d.commands.push(args);
      d.room -= cost;
    } else if (cost <= C) {
      d = fresh();
      d.commands.push(args);
      d.room -= cost;
    } else {
      if (d.room < 256) d = fresh();
      const packed = packedArgsOf(args);
      const frags = packed ? slicePackedList(packed, 0, d.room, C) : sliceBufferList(args, 0, d.room, C);
      frags.forEach((f, i) => {
        if (i > 0) d = fresh(true);
        d.commands.push(f);
        d.room -= listLen(f);
      });
    }
  }
  return drafts.map((dr, i) => {
    const piece: EventPiece = { index: i, last: i === drafts.length - 1 };
    if (dr.continued) piece.continued = true;
    return { ...e, pos: { ...e.pos, seq: e.pos.seq + i }, commands: dr.commands, piece };
  });
}

// ---------------------------------------------------------------------------------------------
// Public API

export interface EncodedEvent {
  event: ChangeEvent;
  /** `encodeEvent(event)` */
  encoded: Buffer;
}

function checkLimit(maxBytes: number): void {
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_RECORD_BYTES) {
    throw new ReplistreamError('CONFIG', `record size limit ${maxBytes} is too small (minimum ${MIN_RECORD_BYTES} bytes)`, {
      setting: 'max-record-bytes',
    });
  }
}

/** The pieces of `event`, whose encoding (`bytes` long) is over `budget` (see `splitForRecordLimit`). */
function splitOversized(event: ChangeEvent, bytes: number, budget: number): ChangeEvent[] {
  if (event.kind === 'snapshot-key' && event.piece === null) return splitSnapshotKey(event, budget);
  if (event.kind === 'command' && event.piece === null) return splitCommand(event, budget);
  throw tooBig(`a ${event.kind} event${'piece' in event && event.piece ? ' piece' : ''} of ${bytes} bytes`, {
    pos: event.pos,
    bytes,
  });
}

function pieceOverBudget(p: ChangeEvent, bytes: number, budget: number): ReplistreamError {
  return new ReplistreamError('INTERNAL', `split produced a ${bytes}-byte piece over the ${budget}-byte budget`, {
    details: { pos: p.pos, index: (p as SnapshotKey | CommandEvent).piece?.index },
  });
}

/** `splitForRecordLimit`, keeping each piece's encoding (so that it is not encoded twice). */
export function splitEncoded(event: ChangeEvent, maxBytes = DEFAULT_MAX_RECORD_BYTES): EncodedEvent[] {
  checkLimit(maxBytes);
  const budget = maxEventBytes(maxBytes);
  // an event over the budget is measured, not copied out (its bytes are not needed)
  const whole = encodeEventWithin(event, budget);
  if (typeof whole !== 'number') return [{ event, encoded: whole }];
  return splitOversized(event, whole, budget).map((p) => {
    const enc = encodeEvent(p);
    if (enc.length > budget) throw pieceOverBudget(p, enc.length, budget);
    return { event: p, encoded: enc };
  });
}

/**
 * The event itself when it fits in one record of `maxBytes` (wire header included), else its
 * pieces, each fitting alone. Only whole snapshot keys and command units can be split; another
 * event too big (absurd key name or replid) is an error.
 */
export function splitForRecordLimit(event: ChangeEvent, maxBytes = DEFAULT_MAX_RECORD_BYTES): ChangeEvent[] {
  return splitEncoded(event, maxBytes).map((x) => x.event);
}

export interface PackedBatch {
  events: ChangeEvent[];
  /** The EventBatch Avro body (no wire header): `WIRE_HEADER_BYTES + body.length <= maxBytes`. */
  body: Buffer;
}

export interface PackOptions {
  /** At most this many events per batch (default: no bound but the size). */
  maxEvents?: number;
}

/**
 * Scratch of `packEncoded`: the current record's events are encoded back to back at [0, pos), and
 * each record body is copied out of it once. Kept between calls (up to 4 record limits).
 */
const packScratch = new EventScratch();

/** Consecutive events (split when needed) packed into EventBatch bodies under `maxBytes`, in order. */
export function packEncoded(events: ChangeEvent[], maxBytes = DEFAULT_MAX_RECORD_BYTES, options: PackOptions = {}): PackedBatch[] {
  checkLimit(maxBytes);
  const maxEvents = options.maxEvents ?? Number.POSITIVE_INFINITY;
  const budget = maxEventBytes(maxBytes);
  const s = packScratch;
  const out: PackedBatch[] = [];
  let cur: ChangeEvent[] = [];
  /** `event` was just encoded at [start, s.pos), after the current record's events at [0, start). */
  const add = (event: ChangeEvent, start: number) => {
    if (cur.length > 0 && (cur.length >= maxEvents || WIRE_HEADER_BYTES + batchBodySize(cur.length + 1, s.pos) > maxBytes)) {
      out.push({ events: cur, body: s.frame(0, start, cur.length) });
      cur = [];
      s.buf.copyWithin(0, start, s.pos);
      s.pos -= start;
    }
    cur.push(event);
  };
  s.pos = 0;
  try {
    for (const e of events) {
      const start = s.pos;
      const n = s.append(e, budget);
      if (n >= 0) {
        add(e, start);
        continue;
      }
      for (const p of splitOversized(e, -n, budget)) {
        const at = s.pos;
        const m = s.append(p, budget);
        if (m < 0) throw pieceOverBudget(p, -m, budget);
        add(p, at);
      }
    }
    if (cur.length > 0) out.push({ events: cur, body: s.frame(0, s.pos, cur.length) });
  } finally {
    s.reset(Math.max(4 * 1024 * 1024, 4 * maxBytes));
  }
  return out;
}

/** One record sealed by a `RecordPacker`. */
export interface SealedRecord {
  /** The EventBatch Avro body (no wire header): `WIRE_HEADER_BYTES + body.length <= maxBytes`. */
  body: Buffer;
  /** Events (or pieces) in the record. */
  count: number;
  /** The first snapshot-begin event of the record, if any (the producer indexes it). */
  snapshotBegin: { epoch: number; db: number } | null;
}

/** Scratch capacity a `RecordPacker` keeps while idle (`trim`). */
const IDLE_PACKER_BYTES = 64 * 1024;

/**
 * `packEncoded` as a stream: events are encoded as they come (split when needed) into one open
 * record, and every record that fills up is sealed (copied out, exact size) into `out`. The
 * events themselves are not kept: memory is the open record's bytes plus the sealed records the
 * caller holds. Same records, byte for byte, as `packEncoded` over the same events, as long as
 * `seal` is called where `packEncoded`'s input would end.
 */
export class RecordPacker {
  private readonly s = new EventScratch(16 * 1024);
  private readonly budget: number;
  /** Events per record at most; a change applies from the next push (capture packs snapshots and streams differently). */
  maxEvents: number;
  private count = 0;
  private begin: { epoch: number; db: number } | null = null;

  constructor(readonly maxBytes = DEFAULT_MAX_RECORD_BYTES, options: PackOptions = {}) {
    checkLimit(maxBytes);
    this.budget = maxEventBytes(maxBytes);
    this.maxEvents = options.maxEvents ?? Number.POSITIVE_INFINITY;
  }

  /** Encoded bytes of the open record. */
  get openBytes(): number {
    return this.s.pos;
  }

  /** Events in the open record. */
  get openCount(): number {
    return this.count;
  }

  /** Encode `event` into the open record; records it completes are appended to `out`. Returns the bytes sealed. */
  push(event: ChangeEvent, out: SealedRecord[]): number {
    const s = this.s;
    const start = s.pos;
    const n = s.append(event, this.budget);
    if (n >= 0) return this.add(event, start, out);
    let sealed = 0;
    for (const p of splitOversized(event, -n, this.budget)) {
      const at = s.pos;
      const m = s.append(p, this.budget);
      if (m < 0) throw pieceOverBudget(p, -m, this.budget);
      sealed += this.add(p, at, out);
    }
    return sealed;
  }

  /**
   * Encodes `event` into the open record when it fits a record alone (returns null, like `push`);
   * else encodes nothing and returns its pieces. `push`ing them one by one makes the same records
   * as `push(event)`; a caller can then hand each record over (and wait for Kafka) before the next
   * piece is encoded, instead of holding them all. Why one call: the event is measured once (a
   * separate size check before `push` measured every command twice, 6 % of capture's CPU at
   * 100,000 SET/s).
   */
  pushOrPieces(event: ChangeEvent, out: SealedRecord[]): ChangeEvent[] | null {
    const start = this.s.pos;
    const n = this.s.append(event, this.budget);
    if (n >= 0) {
      this.add(event, start, out);
      return null;
    }
    return splitOversized(event, -n, this.budget);
  }

  /** Seals the open record (if it holds any event) into `out`. Returns the bytes sealed. */
  seal(out: SealedRecord[]): number {
    if (this.count === 0) return 0;
    const body = this.s.frame(0, this.s.pos, this.count);
    out.push({ body, count: this.count, snapshotBegin: this.begin });
    this.count = 0;
    this.begin = null;
    this.s.pos = 0;
    return body.length;
  }

  /** Lets a grown scratch buffer go when no record is open. */
  trim(): void {
    if (this.count === 0) this.s.reset(IDLE_PACKER_BYTES);
  }

  /** `event` was just encoded at [start, pos), after the open record's events at [0, start). */
  private add(event: ChangeEvent, start: number, out: SealedRecord[]): number {
    const s = this.s;
    let sealed = 0;
    if (this.count > 0 && (this.count >= this.maxEvents || WIRE_HEADER_BYTES + batchBodySize(this.count + 1, s.pos) > this.maxBytes)) {
      const body = s.frame(0, start, this.count);
      out.push({ body, count: this.count, snapshotBegin: this.begin });
      sealed = body.length;
      this.count = 0;
      this.begin = null;
      s.buf.copyWithin(0, start, s.pos);
      s.pos -= start;
    }
    this.count++;
    if (this.begin === null && event.kind === 'snapshot-begin') this.begin = { epoch: event.pos.epoch, db: event.db };
    return sealed;
  }
}

/** Consecutive events packed into batches whose encoded record (wire header included) fits `maxBytes`. */
export function packBatches(events: ChangeEvent[], maxBytes = DEFAULT_MAX_RECORD_BYTES, options: PackOptions = {}): ChangeEvent[][] {
  return packEncoded(events, maxBytes, options).map((b) => b.events);
}

// ---------------------------------------------------------------------------------------------
// Reassembly

function pieceOf(e: ChangeEvent): EventPiece | null {
  return e.kind === 'snapshot-key' || e.kind === 'command' ? e.piece : null;
}

/**
 * Position of the whole event a piece belongs to (its first piece's): a command's piece i has
 * `seq` + i, a snapshot key's pieces share the key's position.
 */
export function seriesPosition(piece: ChangeEvent, index: number): SourcePosition {
  return piece.kind === 'command' ? { ...piece.pos, seq: piece.pos.seq - index } : piece.pos;
}

function sameSeries(first: ChangeEvent, e: ChangeEvent, index: number): boolean {
  if (first.kind !== e.kind || first.db !== e.db || first.pos.epoch !== e.pos.epoch || first.pos.offset !== e.pos.offset) return false;
  if (first.kind === 'snapshot-key') return e.pos.seq === first.pos.seq && (e as SnapshotKey).key.equals(first.key);
  return e.pos.seq === first.pos.seq + index;
}

function mergeValue(acc: TypedValue, next: TypedValue, continued: boolean): void {
  if (acc.type !== next.type) throw new ReplistreamError('PROTOCOL', `pieces of one key disagree on its type (${acc.type} then ${next.type})`);
  switch (acc.type) {
    case 'string':
      acc.value = Buffer.concat([acc.value, (next as typeof acc).value]);
      return;
    case 'module':
      return;
    case 'list':
    case 'set': {
      const a = acc.type === 'list' ? acc.items : acc.members;
      const n = next.type === 'list' ? next.items : (next as { members: Buffer[] }).members;
      let i = 0;
      if (continued && n.length && a.length) a[a.length - 1] = Buffer.concat([a[a.length - 1], n[i++]]);
      for (; i < n.length; i++) a.push(n[i]);
      return;
    }
    case 'zset': {
      const n = (next as typeof acc).entries;
      let i = 0;
      if (continued && n.length && acc.entries.length) {
        const last = acc.entries[acc.entries.length - 1];
        acc.entries[acc.entries.length - 1] = { member: Buffer.concat([last.member, n[0].member]), score: n[0].score };
        i = 1;
      }
      for (; i < n.length; i++) acc.entries.push(n[i]);
      return;
    }
    case 'hash': {
      const n = (next as typeof acc).entries;
      let i = 0;
      if (continued && n.length && acc.entries.length) {
        const last = acc.entries[acc.entries.length - 1];
        acc.entries[acc.entries.length - 1] = {
          field: Buffer.concat([last.field, n[0].field]),
          value: Buffer.concat([last.value, n[0].value]),
          expireAtMs: n[0].expireAtMs,
        };
        i = 1;
      }
      for (; i < n.length; i++) acc.entries.push(n[i]);
      return;
    }
    case 'stream': {
      const a = acc.stream;
      const n = (next as typeof acc).stream;
      let i = 0;
      if (continued && n.entries.length && a.entries.length) {
        const last = a.entries[a.entries.length - 1];
        const fields = [...last.fields];
        joinBufferLists(fields, n.entries[0].fields);
        a.entries[a.entries.length - 1] = { id: last.id, fields };
        i = 1;
      }
      for (; i < n.entries.length; i++) a.entries.push(n.entries[i]);
      for (const g of n.groups) {
        const have = a.groups.find((x) => x.name.equals(g.name));
        if (!have) {
          a.groups.push({ ...g, pending: [...g.pending], consumers: g.consumers.map((c) => ({ ...c, pending: [...c.pending] })) });
          continue;
        }
        have.pending.push(...g.pending);
        for (const c of g.consumers) {
          const hc = have.consumers.find((x) => x.name.equals(c.name));
          if (hc) hc.pending.push(...c.pending);
          else have.consumers.push({ ...c, pending: [...c.pending] });
        }
      }
      return;
    }
  }
}

/** A copy of a typed value whose element arrays (and stream groups) can be appended to. */
export function cloneValue(v: TypedValue): TypedValue {
  switch (v.type) {
    case 'string':
    case 'module':
      return { ...v };
    case 'list':
      return { type: 'list', items: [...v.items] };
    case 'set':
      return { type: 'set', members: [...v.members] };
    case 'zset':
      return { type: 'zset', entries: [...v.entries] };
    case 'hash':
      return { type: 'hash', entries: [...v.entries] };
    case 'stream':
      return {
        type: 'stream',
        stream: {
          ...v.stream,
          entries: [...v.stream.entries],
          groups: v.stream.groups.map((g) => ({ ...g, pending: [...g.pending], consumers: g.consumers.map((c) => ({ ...c, pending: [...c.pending] })) })),
        },
      };
  }
}

/**
 * Above this size, an argument continued over several pieces grows in place (`GrowingBytes`)
 * instead of by `Buffer.concat`. An argument is only continued when it fills a record, so one that
 * grows past a record's worth is a big one; small continued ones (a piece boundary falling inside
 * a short HSET field) keep the cheap concat.
 */
const GROW_IN_PLACE_BYTES = 256 * 1024;

/**
 * The bytes of one argument rebuilt from its slices, in one resizable ArrayBuffer: it reserves
 * address space for the largest Buffer and commits memory as it grows, so each slice is copied
 * once, in place, and the record it came from can be let go at once.
 *
 * Why: a 100 MB SET travels in ~115 pieces. Joined by `Buffer.concat` at every piece, the applier
 * copied 6 GB and held the old and the new copy at each step; joined once at the end, it held every
 * piece's record (views of them) and the joined copy together, twice the argument. Growing in
 * place holds the argument once, plus the records not yet collected.
 */
class GrowingBytes {
  private readonly ab = newResizable();
  /** A length-tracking view of `ab`. */
  private readonly all = new Uint8Array(this.ab);
  private length = 0;

  constructor(first: Buffer) {
    this.append(first);
  }

  get bytes(): number {
    return this.length;
  }

  append(b: Buffer): void {
    if (b.length === 0) return;
    const end = this.length + b.length;
    if (end > MAX_LENGTH) throw new ReplistreamError('PROTOCOL', `pieces rebuild an argument longer than ${MAX_LENGTH} bytes`);
    if (end > this.ab.byteLength) growTo(this.ab, end);
    this.all.set(b, this.length);
    this.length = end;
  }

  /** The bytes so far, as a Buffer (not length-tracking: later appends do not change it). */
  done(): Buffer {
    this.ab.resize(this.length);
    return Buffer.from(this.ab, 0, this.length);
  }
}

/**
 * A split command rebuilt piece by piece, as they come (see `sliceBufferList` for the rule): each
 * piece is taken in and can be dropped at once, so what a series costs while it is read is the
 * command being rebuilt, not its pieces too. The argument arrays of the pieces are copied before
 * they are appended to (a piece may share them with the event it was split from).
 */
class CommandSeries {
  private readonly commands: Buffer[][];
  /** commands[last] is an array of our own (appended to in place). */
  private lastOwned = false;
  /** The last argument of commands[last], growing while pieces continue it. */
  private growing: GrowingBytes | null = null;
  /**
   * commands[last]'s arguments once they are `PACK_ARGS_FROM` or more (an HSET of a million
   * fields): packed, not one Buffer each (packed-args.ts).
   */
  private packed: PackedArgs | null = null;
  /** Pieces taken in. */
  count = 1;

  constructor(readonly first: CommandEvent) {
    this.commands = [...first.commands];
  }

  add(p: CommandEvent): void {
    this.count++;
    const cmds = p.commands;
    let i = 0;
    if (p.piece!.continued && cmds.length && this.commands.length) {
      const frag = cmds[0];
      i = 1;
      if (frag.length > 0 && !this.packed) {
        // a packed command (or fragment of one) stays packed: its arguments are copied from storage
        const lastPacked = packedArgsOf(this.commands[this.commands.length - 1]);
        if (lastPacked) this.packFrom(lastPacked);
        else if (packedArgsOf(frag)) this.pack(this.ownLast());
      }
      if (frag.length > 0 && this.packed) {
        const fp = packedArgsOf(frag);
        if (fp) {
          this.packed.extendLastFrom(fp.data, packedStart(fp, 0), packedEnd(fp, 0));
          this.packed.appendRange(fp, 1);
        } else {
          this.packed.extendLast(frag[0]);
          for (let k = 1; k < frag.length; k++) this.packed.push(frag[k]);
        }
      } else if (frag.length > 0) {
        const last = this.ownLast();
        // the fragment's first buffer extends the last argument; its other buffers follow it
        if (last.length === 0) last.push(frag[0]);
        else this.extend(last, frag[0]);
        if (frag.length > 1) {
          this.settle();
          for (let k = 1; k < frag.length; k++) last.push(frag[k]);
        }
        if (last.length >= PACK_ARGS_FROM && resizableArrayBuffers()) this.pack(last);
      }
    }
    if (i < cmds.length) {
      this.settle();
      for (; i < cmds.length; i++) this.commands.push(cmds[i]);
      this.lastOwned = false;
    }
  }

  whole(): CommandEvent {
    this.settle();
    return { ...this.first, commands: this.commands, piece: null };
  }

  /** From now on the last command's arguments are packed: a copy of packed `s`. */
  private packFrom(s: PackedStorage): void {
    this.settle();
    const packed = new PackedArgs();
    packed.appendRange(s, 0);
    this.packed = packed;
    this.commands[this.commands.length - 1] = [];
  }

  /** From now on the last command's arguments are packed (its Buffers are let go). */
  private pack(last: Buffer[]): void {
    this.settle();
    const packed = new PackedArgs();
    for (const a of last) packed.push(a);
    this.packed = packed;
    this.commands[this.commands.length - 1] = [];
  }

  private ownLast(): Buffer[] {
    const at = this.commands.length - 1;
    if (!this.lastOwned) {
      this.commands[at] = [...this.commands[at]];
      this.lastOwned = true;
    }
    return this.commands[at];
  }

  /** Appends `more` to the last argument of `last` (our own array). */
  private extend(last: Buffer[], more: Buffer): void {
    if (this.growing) {
      this.growing.append(more);
      return;
    }
    const prev = last[last.length - 1];
    if (prev.length + more.length >= GROW_IN_PLACE_BYTES && resizableArrayBuffers()) {
      this.growing = new GrowingBytes(prev);
      this.growing.append(more);
      last[last.length - 1] = EMPTY; // the slice (and its record) is not needed any more
    } else if (more.length > 0) last[last.length - 1] = Buffer.concat([prev, more]);
  }

  /**
   * The growing argument or the packed arguments, if any, take their place in the last command:
   * no later piece extends them.
   */
  private settle(): void {
    if (this.packed) {
      this.commands[this.commands.length - 1] = this.packed.view();
      this.packed = null;
      this.lastOwned = false;
    }
    if (!this.growing) return;
    const last = this.commands[this.commands.length - 1];
    last[last.length - 1] = this.growing.done();
    this.growing = null;
  }
}

/** The whole event rebuilt from all its pieces, in index order (see `splitForRecordLimit`). */
export function assemblePieces(pieces: ChangeEvent[]): ChangeEvent {
  const first = pieces[0];
  if (!first) throw new ReplistreamError('INTERNAL', 'assemblePieces: no pieces');
  pieces.forEach((p, i) => {
    const pc = pieceOf(p);
    if (!pc || pc.index !== i || pc.last !== (i === pieces.length - 1) || !sameSeries(first, p, i)) {
      throw new ReplistreamError('PROTOCOL', `pieces of an event are incomplete or out of order (piece ${i})`, { details: { pos: p.pos } });
    }
  });
  if (first.kind === 'command') {
    const series = new CommandSeries(first);
    for (let i = 1; i < pieces.length; i++) series.add(pieces[i] as CommandEvent);
    return series.whole();
  }
  const keys = pieces as SnapshotKey[];
  const payloads = keys.filter((p) => p.payload !== null).map((p) => p.payload as Buffer);
  let value: TypedValue | null = null;
  for (const p of keys) {
    if (p.value === null) continue;
    if (value === null) value = cloneValue(p.value);
    else mergeValue(value, p.value, p.piece!.continued === true);
  }
  const k = first as SnapshotKey;
  return { ...k, payload: payloads.length ? Buffer.concat(payloads) : null, value, piece: null };
}

export interface PieceAssemblerOptions {
  /** Called when pieces are discarded: a series cut short (capture restarted mid-event) or one read from its middle. */
  onDiscard?: (reason: string, pieces: number, pos: ChangeEvent['pos']) => void;
}

/**
 * Rebuilds split events for an applier. Use one per topic-partition and feed it events in offset
 * order: `push` returns the event itself when it is whole, the rebuilt event when its last piece
 * arrives, or null while pieces are pending.
 *
 * A series that does not complete (another event or a new piece 0 arrives first: the capture
 * crashed mid-event and re-sent it whole later) is discarded; so are pieces read without their
 * beginning (a consumer started in the middle of a series). Both are reported to `onDiscard`.
 */
export class PieceAssembler {
  /** Pieces of a snapshot key series, kept until its last piece. */
  private parts: ChangeEvent[] = [];
  /** A command series, rebuilt as its pieces come (`CommandSeries`). */
  private series: CommandSeries | null = null;
  private readonly onDiscard?: PieceAssemblerOptions['onDiscard'];
  discarded = 0;

  constructor(options: PieceAssemblerOptions = {}) {
    this.onDiscard = options.onDiscard;
  }

  /** Pieces held, waiting for the rest of their event. */
  get pending(): number {
    return this.series ? this.series.count : this.parts.length;
  }

  push(event: ChangeEvent): ChangeEvent | null {
    const piece = pieceOf(event);
    if (!piece) {
      this.abandon('series interrupted by another event');
      return event;
    }
    const held = this.pending;
    if (piece.index === 0) {
      this.abandon('series restarted from its first piece');
      if (event.kind === 'command') this.series = new CommandSeries(event);
      else this.parts = [event];
    } else if (held === 0) {
      this.discard('piece without its beginning', 1, event.pos);
      return null;
    } else if (piece.index !== held || !sameSeries(this.series ? this.series.first : this.parts[0], event, piece.index)) {
      this.abandon('series interrupted by another series');
      this.discard('piece without its beginning', 1, event.pos);
      return null;
    } else if (this.series) {
      this.series.add(event as CommandEvent);
    } else {
      this.parts.push(event);
    }
    if (!piece.last) return null;
    if (this.series) {
      const whole = this.series.whole();
      this.series = null;
      return whole;
    }
    const whole = assemblePieces(this.parts);
    this.parts = [];
    return whole;
  }

  /** Forget pending pieces (after a rebalance or a seek). */
  reset(): void {
    this.parts = [];
    this.series = null;
  }

  private abandon(reason: string): void {
    const n = this.pending;
    if (n === 0) return;
    this.discard(reason, n, this.series ? this.series.first.pos : this.parts[0].pos);
    this.parts = [];
    this.series = null;
  }

  private discard(reason: string, n: number, pos: ChangeEvent['pos']): void {
    this.discarded += n;
    this.onDiscard?.(reason, n, pos);
  }
}
