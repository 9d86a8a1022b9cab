import { describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatch, encodeEvent } from '../../../services/events/codec.js';
import {
  assemblePieces,
  DEFAULT_MAX_RECORD_BYTES,
  maxEventBytes,
  packBatches,
  packEncoded,
  PieceAssembler,
  splitEncoded,
  splitForRecordLimit,
  WIRE_HEADER_BYTES,
} from '../../../services/events/split.js';
import { PackedArgs, packedArgsOf } from '../../../services/events/packed-args.js';
import type { ChangeEvent, CommandEvent, SnapshotKey, StreamValue, TypedValue } from '../../../services/events/model.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { b, bytes, command, everyEvent, expectSame, key, pos, rng, stream } from './fixtures.js';

/** Split, check every piece fits, reassemble, check equality; returns the pieces. */
function roundTrip(e: ChangeEvent, limit: number): ChangeEvent[] {
  const parts = splitEncoded(e, limit);
  for (const p of parts) {
    expect(p.encoded.equals(encodeEvent(p.event))).toBe(true);
    expect(p.encoded.length).toBeLessThanOrEqual(maxEventBytes(limit));
    // a record holding this piece alone fits
    const [batch] = packEncoded([p.event], limit);
    expect(WIRE_HEADER_BYTES + batch.body.length).toBeLessThanOrEqual(limit);
  }
  const events = parts.map((p) => p.event);
  if (events.length > 1) {
    events.forEach((p, i) => {
      const pc = (p as SnapshotKey | CommandEvent).piece!;
      expect(pc.index).toBe(i);
      expect(pc.last).toBe(i === events.length - 1);
    });
    expectSame(assemblePieces(decodeBatch(packEncoded(events, limit * 100)[0].body)), e);
    const asm = new PieceAssembler();
    const out = events.map((p) => asm.push(p));
    expect(out.slice(0, -1).every((x) => x === null)).toBe(true);
    expectSame(out[out.length - 1], e);
    expect(asm.pending).toBe(0);
  } else {
    expect(events[0]).toBe(e);
  }
  return events;
}

const list = (items: Buffer[]): TypedValue => ({ type: 'list', items });

describe('splitForRecordLimit', () => {
  it('leaves an event that fits alone untouched', () => {
    for (const e of everyEvent().filter((x) => !('piece' in x) || x.piece === null)) expect(splitForRecordLimit(e)).toEqual([e]);
  });

  it('a 5 MB key with payload and typed string value, default limit', () => {
    const e = key({ type: 'string', value: bytes(5_000_000, 1) }, { payload: bytes(5_000_020, 2), expireAtMs: 1893456000000 });
    const parts = roundTrip(e, DEFAULT_MAX_RECORD_BYTES) as SnapshotKey[];
    expect(parts.length).toBeGreaterThanOrEqual(12);
    expect(parts.length).toBeLessThanOrEqual(13);
    for (const p of parts) {
      expect(p.key).toEqual(e.key);
      expect(p.pos).toEqual(e.pos);
      expect(p.expireAtMs).toBe(e.expireAtMs);
    }
  });

  it('payload only (value null) and value only (payload null)', () => {
    roundTrip(key(null, { type: 'list', payload: bytes(20_000) }), 4096);
    roundTrip(key(list(Array.from({ length: 3000 }, (_, i) => bytes(i % 23, i)))), 4096);
  });

  it('lists and sets with many items, items bigger than a record, empty items', () => {
    const items = [bytes(10), bytes(9000, 1), Buffer.alloc(0), bytes(3000, 2), bytes(4070, 3), ...Array.from({ length: 2000 }, (_, i) => bytes(i % 17, i))];
    roundTrip(key(list(items), { payload: bytes(7000) }), 4096);
    roundTrip(key({ type: 'set', members: items }), 4096);
    roundTrip(key(list([bytes(50_000)])), 2048);
    roundTrip(key(list([Buffer.alloc(0), bytes(50_000), Buffer.alloc(0)])), 2048);
  });

  it('sorted sets keep scores (also -0, NaN) across a big member', () => {
    const entries = [
      { member: bytes(10_000), score: -0 },
      { member: b('n'), score: Number.NaN },
      { member: bytes(9_000, 9), score: Number.NEGATIVE_INFINITY },
      ...Array.from({ length: 500 }, (_, i) => ({ member: bytes(i % 30, i), score: i / 3 })),
    ];
    roundTrip(key({ type: 'zset', entries }), 4096);
  });

  it('hashes with a big field, a big value and field TTLs', () => {
    const entries = [
      { field: bytes(5000), value: bytes(7000, 1), expireAtMs: 1893456000000 },
      { field: b('f'), value: bytes(7000, 2), expireAtMs: null },
      { field: bytes(7000, 3), value: Buffer.alloc(0), expireAtMs: null },
      ...Array.from({ length: 500 }, (_, i) => ({ field: bytes(i % 30, i), value: bytes(i % 5), expireAtMs: i % 2 ? null : i })),
    ];
    roundTrip(key({ type: 'hash', entries }), 4096);
  });

  it('streams: many entries, a huge entry, big PELs and consumer pending lists', () => {
    const s: StreamValue = {
      ...stream(),
      entries: [
        { id: { ms: 1n, seq: 0n }, fields: [bytes(3), bytes(9000), bytes(2), bytes(4)] },
        { id: { ms: 1n, seq: 1n }, fields: [bytes(9000), bytes(9000, 1)] },
        ...Array.from({ length: 300 }, (_, i) => ({ id: { ms: BigInt(i + 2), seq: 2n ** 64n - 1n }, fields: [bytes(3), bytes(i % 40)] })),
      ],
      groups: [
        {
          name: b('g1'),
          lastId: { ms: 3n, seq: 0n },
          entriesRead: 5,
          pending: Array.from({ length: 600 }, (_, i) => ({ id: { ms: BigInt(i), seq: 1n }, deliveryTimeMs: 1.7e12 + i, deliveryCount: 2, consumer: b('c' + (i % 3)) })),
          consumers: [0, 1, 2].map((c) => ({ name: b('c' + c), seenTimeMs: 1.7e12, activeTimeMs: 1.7e12, pending: Array.from({ length: 400 }, (_, i) => ({ ms: BigInt(i), seq: 1n })) })),
        },
        { name: b('g2'), lastId: { ms: 3n, seq: 0n }, pending: [], consumers: [{ name: b('idle'), seenTimeMs: 1, pending: [] }] },
        { name: b('g3'), lastId: { ms: 3n, seq: 0n }, pending: [], consumers: [] },
      ],
    };
    const parts = roundTrip(key({ type: 'stream', stream: s }, { payload: bytes(9000) }), 4096) as SnapshotKey[];
    expect(parts.length).toBeGreaterThan(10);
    // every piece repeats the stream metadata
    for (const p of parts) {
      if (p.value?.type === 'stream') {
        expect(p.value.stream.lastId).toEqual(s.lastId);
        expect(p.value.stream.length).toBe(s.length);
      }
    }
  });

  it('an appended part of a key (RDB parser bound) keeps append on every piece', () => {
    const parts = roundTrip(key(list(Array.from({ length: 500 }, (_, i) => bytes(30, i))), { append: true }), 2048) as SnapshotKey[];
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.every((p) => p.append === true)).toBe(true);
  });

  it('module keys: payload split, module id kept', () => {
    roundTrip(key({ type: 'module', moduleId: 'ReJSON-RL' }, { type: 'module', payload: bytes(100_000) }), 4096);
  });

  it('command units: one huge argument, many commands, many arguments', () => {
    const e = command(
      [
        [b('SET'), b('k'), bytes(20_000)],
        ...Array.from({ length: 500 }, (_, i) => [b('INCR'), bytes(i % 50, i)]),
        [b('RPUSH'), b('l'), ...Array.from({ length: 3000 }, (_, i) => bytes(i % 5, i))],
        [b('SET'), bytes(6000, 4), Buffer.alloc(0)],
        [b('EXEC')],
      ],
      { participants: [{ db: 0, partition: 1 }, { db: 0, partition: 2 }], pos: pos(9999, 0) },
    );
    const parts = roundTrip(e, 4096) as CommandEvent[];
    parts.forEach((p, i) => {
      expect(p.pos.seq).toBe(i); // model.ts: seq is the piece of a split command
      expect(p.participants).toEqual([{ db: 0, partition: 1 }, { db: 0, partition: 2 }]);
    });
    expect(parts.some((p) => p.piece?.continued)).toBe(true);
  });

  it('one RPUSH of 1,000,000 elements (a 22 MB command) splits and reassembles without recursion', () => {
    const elements = Array.from({ length: 1_000_000 }, (_, i) => Buffer.from(`element-${i}`));
    const e = command([[b('RPUSH'), b('biglist'), ...elements]]);
    const parts = splitForRecordLimit(e);
    expect(parts.length).toBeGreaterThan(10);
    const back = assemblePieces(parts.map((p) => decodeBatch(encodeBatch([p]))[0])) as CommandEvent;
    expect(back.commands).toHaveLength(1);
    expect(back.commands[0]).toHaveLength(1_000_002);
    expect(back.commands[0][999_999].toString()).toBe('element-999997');
    // rebuilt packed (events/packed-args.ts), not as a million Buffers
    expect(packedArgsOf(back.commands[0])?.count).toBe(1_000_002);
    expect(encodeEvent(back).equals(encodeEvent(e))).toBe(true);
  });

  it('a 5 MB SET argument fits under the default limit', () => {
    const parts = roundTrip(command([[b('SET'), b('big'), bytes(5 * 1024 * 1024)]]), DEFAULT_MAX_RECORD_BYTES);
    expect(parts.length).toBe(6);
  });

  it('big arguments rebuilt in place: several in a row, between small ones, last in a unit, over decoded pieces', () => {
    // over 256 KiB a continued argument grows in one resizable buffer instead of by concat
    const e = command([
      [b('HSET'), b('h'), bytes(600_000, 1), b('f'), bytes(700_000, 2), bytes(300_000, 3), b('x')],
      [b('SET'), b('k'), bytes(1_000_000, 4)],
      [b('APPEND'), bytes(400_000, 5), b('')],
      [b('EXEC')],
    ]);
    const before = encodeEvent(e);
    const parts = roundTrip(e, 65_536) as CommandEvent[];
    expect(parts.filter((p) => p.piece?.continued).length).toBeGreaterThan(40);
    const asm = new PieceAssembler();
    let back: ChangeEvent | null = null;
    for (const p of parts) back = asm.push(decodeBatch(encodeBatch([p]))[0]);
    expectSame(back!, e);
    // pieces share argument arrays with the event they were split from: never appended to
    expect(encodeEvent(e).equals(before)).toBe(true);
  });

  it('packed arguments split into the same pieces as Buffers, byte for byte (property)', () => {
    const r = rng(4242);
    for (let iter = 0; iter < 60; iter++) {
      const limit = 1024 + Math.floor(r() * 6000);
      const args = [b('HSET'), ...Array.from({ length: 1 + Math.floor(r() * 400) }, () => bytes(r() < 0.05 ? Math.floor(r() * 4 * limit) : Math.floor(r() * 40), Math.floor(r() * 100)))];
      const p = new PackedArgs();
      for (const a of args) p.push(a);
      const plain = splitForRecordLimit(command([[b('MULTI')], args, [b('EXEC')]]), limit);
      const packed = splitForRecordLimit(command([[b('MULTI')], p.view(), [b('EXEC')]]), limit);
      expect(packed.length).toBe(plain.length);
      packed.forEach((x, i) => expect(encodeEvent(x).equals(encodeEvent(plain[i])), `iteration ${iter}, piece ${i}`).toBe(true));
    }
  });

  it('random shapes under random limits always fit and reassemble (property)', () => {
    const r = rng(12345);
    const buf = (max: number) => bytes(Math.floor(r() * r() * max), Math.floor(r() * 1000));
    const n = (max: number) => Math.floor(r() * max);
    for (let iter = 0; iter < 120; iter++) {
      const limit = 1024 + n(6000);
      const big = 3 * limit;
      const kind = n(7);
      let e: ChangeEvent;
      const payload = r() < 0.5 ? buf(big) : null;
      if (kind === 0) e = key({ type: 'string', value: buf(big) }, { payload });
      else if (kind === 1) e = key(list(Array.from({ length: n(400) }, () => buf(r() < 0.05 ? big : 40))), { payload });
      else if (kind === 2) e = key({ type: 'zset', entries: Array.from({ length: n(400) }, () => ({ member: buf(r() < 0.05 ? big : 40), score: r() * 1e6 - 5e5 })) }, { payload });
      else if (kind === 3)
        e = key({ type: 'hash', entries: Array.from({ length: n(400) }, () => ({ field: buf(r() < 0.05 ? big : 30), value: buf(r() < 0.05 ? big : 30), expireAtMs: r() < 0.3 ? n(1e12) : null })) }, { payload });
      else if (kind === 4)
        e = key(
          {
            type: 'stream',
            stream: {
              ...stream(),
              entries: Array.from({ length: n(200) }, (_, i) => ({ id: { ms: BigInt(i), seq: 0n }, fields: Array.from({ length: n(6) }, () => buf(r() < 0.05 ? big : 30)) })),
              groups: Array.from({ length: n(4) }, (_, g) => ({
                name: b(`g${g}`),
                lastId: { ms: 1n, seq: 1n },
                pending: Array.from({ length: n(300) }, (_, i) => ({ id: { ms: BigInt(i), seq: 0n }, deliveryTimeMs: n(1e12), deliveryCount: n(9) })),
                consumers: Array.from({ length: n(4) }, (_, c) => ({ name: b(`c${c}`), seenTimeMs: n(1e12), pending: Array.from({ length: n(300) }, (_, i) => ({ ms: BigInt(i), seq: 0n })) })),
              })),
            },
          },
          { payload },
        );
      else if (kind === 5) e = key(null, { payload: buf(big) ?? Buffer.alloc(0) });
      else e = command(Array.from({ length: 1 + n(50) }, () => Array.from({ length: 1 + n(30) }, () => buf(r() < 0.05 ? big : 60))));
      roundTrip(e, limit);
    }
  });

  it('refuses what cannot be split: a key name bigger than the limit, an already split piece, a tiny limit', () => {
    expect(() => splitForRecordLimit(key(list([bytes(10_000)]), { key: bytes(5000) }), 4096)).toThrow(ReplistreamError);
    expect(() => splitForRecordLimit(key(list([bytes(10_000)]), { piece: { index: 0, last: false } }), 4096)).toThrow(/does not fit/);
    expect(() => splitForRecordLimit(everyEvent()[0], 100)).toThrow(/too small/);
  });
});

describe('PieceAssembler', () => {
  const e1 = key(list(Array.from({ length: 200 }, (_, i) => bytes(40, i))));
  const e2 = command([[b('SET'), b('k'), bytes(10_000)]], { pos: pos(7000) });
  const p1 = splitForRecordLimit(e1, 2048);
  const p2 = splitForRecordLimit(e2, 2048);

  it('passes whole events through and rebuilds consecutive series', () => {
    const asm = new PieceAssembler();
    const hb: ChangeEvent = { kind: 'heartbeat', pos: pos(1), db: 0, timeMs: 5 };
    const out = [hb, ...p1, ...p2, hb].map((x) => asm.push(x)).filter((x) => x !== null);
    expect(out).toStrictEqual([hb, e1, e2, hb]);
  });

  it('discards a series cut short, then rebuilds its re-sent copy', () => {
    const discards: Array<[string, number]> = [];
    const asm = new PieceAssembler({ onDiscard: (reason, n) => discards.push([reason, n]) });
    const out = [...p1.slice(0, 3), ...p1].map((x) => asm.push(x)).filter((x) => x !== null);
    expect(out).toStrictEqual([e1]);
    expect(discards).toEqual([['series restarted from its first piece', 3]]);
    expect(asm.discarded).toBe(3);
  });

  it('discards pieces read without their beginning, and a series interrupted by another event', () => {
    const asm = new PieceAssembler();
    const out = [...p1.slice(2), ...p2.slice(0, 2), ...p1].map((x) => asm.push(x)).filter((x) => x !== null);
    expect(out).toStrictEqual([e1]);
    expect(asm.discarded).toBe(p1.length - 2 + 2);
  });

  it('assemblePieces refuses an incomplete or shuffled series', () => {
    expect(() => assemblePieces(p1.slice(0, -1))).toThrow(/incomplete or out of order/);
    expect(() => assemblePieces([p1[1], p1[0], ...p1.slice(2)])).toThrow(/incomplete or out of order/);
  });
});

describe('packBatches', () => {
  it('packs in order, no record over the limit, splitting big events', () => {
    const r = rng(7);
    const events: ChangeEvent[] = [];
    for (let i = 0; i < 3000; i++) {
      const x = r();
      if (x < 0.01) events.push(key(list([bytes(Math.floor(r() * 30_000))]), { pos: pos(i, i) }));
      else if (x < 0.5) events.push(command([[b('SET'), b(`k${i}`), bytes(Math.floor(r() * 300))]], { pos: pos(i) }));
      else events.push(key({ type: 'string', value: bytes(Math.floor(r() * 200)) }, { pos: pos(i, i), payload: bytes(50) }));
    }
    for (const limit of [1024, 4096, 65_536, DEFAULT_MAX_RECORD_BYTES]) {
      const packed = packEncoded(events, limit);
      const flat = packed.flatMap((p) => p.events);
      expectSame(flat, events.flatMap((e) => splitForRecordLimit(e, limit)));
      for (const p of packed) {
        expect(WIRE_HEADER_BYTES + p.body.length).toBeLessThanOrEqual(limit);
        expectSame(decodeBatch(p.body), p.events);
      }
      // reassembles to the original sequence
      const asm = new PieceAssembler();
      expectSame(flat.map((e) => asm.push(e)).filter((x) => x !== null), events);
      // batches are full: each next event would not have fit in the previous batch
      for (let i = 1; i < packed.length; i++) {
        const next = encodeEvent(packed[i].events[0]).length;
        expect(WIRE_HEADER_BYTES + packed[i - 1].body.length + next).toBeGreaterThan(limit - 10);
      }
      expectSame(packBatches(events, limit), packed.map((p) => p.events));
    }
  });

  it('honours maxEvents and handles empty input', () => {
    const events: ChangeEvent[] = Array.from({ length: 25 }, (_, i) => ({ kind: 'heartbeat', pos: pos(i), db: 0, timeMs: i }));
    expect(packBatches(events, DEFAULT_MAX_RECORD_BYTES, { maxEvents: 10 }).map((x) => x.length)).toEqual([10, 10, 5]);
    expect(packBatches([], DEFAULT_MAX_RECORD_BYTES)).toEqual([]);
  });
});
