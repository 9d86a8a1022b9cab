/**
 * A snapshot key cut into pieces (see split.ts): the RESTORE `payload` is sliced (pieces 0…k carry
 * consecutive slices), then the typed `value`'s elements are spread over pieces (each piece's value
 * holds a slice of the list items / set members / zset or hash entries / stream entries and groups).
 * Every piece repeats db, key, type, expireAtMs and pos. A stream piece repeats the stream metadata;
 * a consumer group (or consumer) may appear in several pieces, each with a slice of its PEL.
 */
import { longLen } from './avro-varint.js';
import { encodedEventSize } from './codec.js';
import type { EventPiece, SnapshotKey, StreamValue, TypedValue } from './model.js';
import { ARRAY_COUNT, BIG_PIECE, bufLen, EMPTY, listLen, PIECE_SLACK, sliceBufferList, sliceComponents, STREAM_ID, tooBig } from './slicing.js';

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

/** The pieces of whole snapshot key `e`, each encoding to at most `budget` bytes. */
export function splitSnapshotKey(e: SnapshotKey, budget: number): SnapshotKey[] {
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
